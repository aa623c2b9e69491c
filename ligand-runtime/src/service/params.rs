//! A route's path parameters, read from the request path by the route's own template.
//!
//! The router has matched the path to the template already, and decoded the parameters into
//! the request's extensions; axum's public way to read them (`RawPathParams`) copies them out
//! into a vector of reference-counted strings, which the guard then copies again and frees:
//! about 600 instructions a request. A template whose segments are each either literal text
//! or one whole parameter (`/accounts/{id}`, nearly every route) says where each parameter is
//! in the path, and decoding it here as axum does (percent-decoding, then UTF-8) gives the
//! same values without the copies.
//!
//! This reading is only taken when the path lines up with the template segment by segment:
//! the same number of segments, every literal one equal. Anything else
//! (a wildcard, a parameter sharing its segment with text, a path that does not line up)
//! leaves the parameters to axum's extraction, as before.

use std::borrow::Cow;

use percent_encoding::percent_decode_str;

use crate::request::PathParams;

/// One segment of a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Segment {
    Literal(&'static str),
    Param(&'static str),
}

/// Where a route's parameters are in the paths it matches.
#[derive(Debug)]
pub(super) struct ParamPlan {
    /// The template's segments after its leading `/`; `None` when one of them is neither
    /// literal nor one whole parameter.
    segments: Option<Box<[Segment]>>,
}

/// What a path's parameters came to.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Read {
    /// The parameters, decoded.
    Params(PathParams),
    /// A parameter is not UTF-8 once decoded: axum refuses such a request too.
    NotUtf8,
    /// The path does not line up with the template: the router's extraction decides.
    Router,
}

impl ParamPlan {
    /// The plan for the route `template`.
    pub(super) fn new(template: &'static str) -> Self {
        let segments = template.strip_prefix('/').and_then(|rest| {
            rest.split('/')
                .map(|segment| {
                    if !segment.contains(['{', '}']) {
                        return Some(Segment::Literal(segment));
                    }
                    let name = segment.strip_prefix('{')?.strip_suffix('}')?;
                    let plain =
                        !name.is_empty() && !name.starts_with('*') && !name.contains(['{', '}']);
                    plain.then_some(Segment::Param(name))
                })
                .collect::<Option<Box<[Segment]>>>()
        });
        Self { segments }
    }

    /// The parameters of `path`, a path the router matched to this plan's template.
    pub(super) fn read(&self, path: &str) -> Read {
        let (Some(segments), Some(rest)) = (&self.segments, path.strip_prefix('/')) else {
            return Read::Router;
        };
        let mut params = PathParams::new();
        let mut rest = Some(rest);
        for segment in segments.iter() {
            let Some(current) = rest else {
                return Read::Router;
            };
            // Segments are short: a byte loop finds the next `/` sooner than a `str` split.
            let (actual, next) = match current.bytes().position(|byte| byte == b'/') {
                Some(at) => (&current[..at], Some(&current[at + 1..])),
                None => (current, None),
            };
            rest = next;
            match *segment {
                Segment::Literal(literal) if literal == actual => {}
                // A parameter may be empty: the router matches `//x` to `/{a}/{b}`.
                Segment::Param(name) => match decode(actual) {
                    Some(value) => params.push(name, value),
                    None => return Read::NotUtf8,
                },
                Segment::Literal(_) => return Read::Router,
            }
        }
        if rest.is_some() {
            return Read::Router;
        }
        Read::Params(params)
    }
}

/// A path segment percent-decoded, as axum decodes a parameter; `None` if that is not UTF-8.
/// A segment without escapes is itself (and UTF-8 already).
fn decode(segment: &str) -> Option<Cow<'_, str>> {
    if !segment.as_bytes().contains(&b'%') {
        return Some(Cow::Borrowed(segment));
    }
    percent_decode_str(segment).decode_utf8().ok()
}

#[cfg(test)]
mod tests;
