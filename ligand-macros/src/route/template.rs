//! The path template of a route: axum 0.8 syntax, checked at compile time so a bad template is
//! a compile error rather than a panic when the router is built.
//!
//! Accepted: `/`, literal segments, whole-segment parameters `{id}` and one final catch-all
//! `{*rest}`. The template is also the policy resource, so it is kept exactly as written.

use std::fmt::{self, Display};

#[cfg(test)]
mod tests;

/// A template that passed validation.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Template {
    /// The template with parameter names erased (`/a/{}/{*}`): two templates with the same
    /// shape match the same requests, so the router refuses to hold both.
    pub(crate) shape: String,
    /// The parameter names in order, `{*rest}` as `rest`: what a client binds.
    pub(crate) params: Vec<String>,
}

/// Why a template is refused. `Display` completes a sentence starting with the attribute name.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TemplateError {
    NoLeadingSlash,
    EmptySegment,
    Forbidden(char),
    ColonParam(String),
    StarWildcard(String),
    Unbalanced(char),
    PartialSegment(String),
    SeveralParams(String),
    BadName(String),
    DuplicateName(String),
    CatchAllNotLast(String),
}

/// Checks `template` and computes its shape.
pub(crate) fn parse(template: &str) -> Result<Template, TemplateError> {
    let Some(rest) = template.strip_prefix('/') else {
        return Err(TemplateError::NoLeadingSlash);
    };
    if let Some(c) = template
        .chars()
        .find(|c| matches!(c, '?' | '#') || c.is_whitespace() || c.is_control())
    {
        return Err(TemplateError::Forbidden(c));
    }
    let segments: Vec<&str> = rest.split('/').collect();
    let mut shape = String::with_capacity(template.len());
    let mut names: Vec<&str> = Vec::new();
    for (index, segment) in segments.iter().enumerate() {
        let last = index + 1 == segments.len();
        shape.push('/');
        // A trailing slash (`/users/`) is a distinct route in axum; only inner `//` is refused.
        if segment.is_empty() {
            if last {
                continue;
            }
            return Err(TemplateError::EmptySegment);
        }
        if let Some(name) = segment.strip_prefix(':') {
            return Err(TemplateError::ColonParam(name.to_owned()));
        }
        if let Some(name) = segment.strip_prefix('*') {
            return Err(TemplateError::StarWildcard(name.to_owned()));
        }
        match parameter(segment)? {
            None => shape.push_str(segment),
            Some(Param { name, catch_all }) => {
                if !is_identifier(name) {
                    return Err(TemplateError::BadName(name.to_owned()));
                }
                if names.contains(&name) {
                    return Err(TemplateError::DuplicateName(name.to_owned()));
                }
                names.push(name);
                if catch_all {
                    if !last {
                        return Err(TemplateError::CatchAllNotLast(name.to_owned()));
                    }
                    shape.push_str("{*}");
                } else {
                    shape.push_str("{}");
                }
            }
        }
    }
    let params = names.into_iter().map(str::to_owned).collect();
    Ok(Template { shape, params })
}

struct Param<'a> {
    name: &'a str,
    catch_all: bool,
}

/// Reads one non-empty segment: `None` for a literal, the parameter for `{name}`/`{*name}`.
fn parameter(segment: &str) -> Result<Option<Param<'_>>, TemplateError> {
    let opens = segment.matches('{').count();
    let closes = segment.matches('}').count();
    if opens == 0 && closes == 0 {
        return Ok(None);
    }
    if opens != closes {
        return Err(TemplateError::Unbalanced(if opens > closes {
            '{'
        } else {
            '}'
        }));
    }
    if opens > 1 {
        return Err(TemplateError::SeveralParams(segment.to_owned()));
    }
    let Some(inner) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) else {
        let (open, close) = (segment.find('{'), segment.find('}'));
        return Err(match (open, close) {
            (Some(open), Some(close)) if open < close => TemplateError::PartialSegment(
                segment[open + 1..close].trim_start_matches('*').to_owned(),
            ),
            _ => TemplateError::Unbalanced('}'),
        });
    };
    Ok(Some(match inner.strip_prefix('*') {
        Some(name) => Param {
            name,
            catch_all: true,
        },
        None => Param {
            name: inner,
            catch_all: false,
        },
    }))
}

/// Like a Rust identifier: the name becomes a field when the parameters are extracted into a
/// struct. `_` alone names nothing and is refused.
fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    (first == '_' || first.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
        && name != "_"
}

impl Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TemplateError::NoLeadingSlash => f.write_str("path template must start with `/`"),
            TemplateError::EmptySegment => {
                f.write_str("path template must not contain an empty segment `//`")
            }
            TemplateError::Forbidden(c) if c.is_whitespace() || c.is_control() => {
                f.write_str("path template must not contain whitespace or control characters")
            }
            TemplateError::Forbidden(c) => {
                write!(
                    f,
                    "path template must not contain `{c}`; it describes the path only"
                )
            }
            TemplateError::ColonParam(name) => {
                write!(
                    f,
                    "path template uses the axum 0.7 syntax `:{name}`; write `{{{name}}}` instead"
                )
            }
            TemplateError::StarWildcard(name) => {
                write!(
                    f,
                    "path template uses the axum 0.7 syntax `*{name}`; write `{{*{name}}}` instead"
                )
            }
            TemplateError::Unbalanced(c) => write!(f, "path template has an unbalanced `{c}`"),
            TemplateError::PartialSegment(name) => {
                write!(
                    f,
                    "path parameter `{{{name}}}` must be a whole segment, as in \"/files/{{{name}}}\""
                )
            }
            TemplateError::SeveralParams(segment) => {
                write!(
                    f,
                    "path segment `{segment}` holds more than one `{{...}}`; a parameter is a whole segment"
                )
            }
            TemplateError::BadName(name) if name.is_empty() => {
                f.write_str("path parameter needs a name, as in `{id}`")
            }
            TemplateError::BadName(name) => {
                write!(
                    f,
                    "path parameter `{name}` must be an identifier, as in `{{id}}`"
                )
            }
            TemplateError::DuplicateName(name) => {
                write!(f, "path parameter `{name}` appears twice")
            }
            TemplateError::CatchAllNotLast(name) => {
                write!(
                    f,
                    "catch-all `{{*{name}}}` must be the last segment of the path template"
                )
            }
        }
    }
}
