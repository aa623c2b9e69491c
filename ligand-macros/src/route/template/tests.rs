use super::{Template, TemplateError, parse};

fn shape(template: &str) -> String {
    match parse(template) {
        Ok(Template { shape, .. }) => shape,
        Err(err) => panic!("{template:?} refused: {err}"),
    }
}

fn refused(template: &str) -> TemplateError {
    match parse(template) {
        Ok(ok) => panic!("{template:?} accepted: {ok:?}"),
        Err(err) => err,
    }
}

#[test]
fn accepts_literals_parameters_and_catch_all() {
    assert_eq!(shape("/"), "/");
    assert_eq!(shape("/health"), "/health");
    assert_eq!(shape("/users/"), "/users/");
    assert_eq!(shape("/accounts/{id}"), "/accounts/{}");
    assert_eq!(shape("/a/{x}/b/{y_2}"), "/a/{}/b/{}");
    assert_eq!(shape("/files/{*rest}"), "/files/{*}");
    assert_eq!(shape("/v1.0/some-thing_x~"), "/v1.0/some-thing_x~");
    assert_eq!(shape("/{_private}"), "/{}");
}

#[test]
fn lists_parameter_names_in_order() {
    let params = |template: &str| parse(template).map(|t| t.params);
    assert_eq!(params("/health"), Ok(vec![]));
    assert_eq!(
        params("/a/{x}/b/{*rest}"),
        Ok(vec!["x".to_owned(), "rest".to_owned()])
    );
}

#[test]
fn same_shape_for_renamed_parameters() {
    assert_eq!(shape("/a/{id}"), shape("/a/{name}"));
    assert_ne!(shape("/a/{id}"), shape("/a/{*id}"));
}

#[test]
fn requires_leading_slash() {
    assert_eq!(refused(""), TemplateError::NoLeadingSlash);
    assert_eq!(refused("hello"), TemplateError::NoLeadingSlash);
    assert_eq!(refused("{id}"), TemplateError::NoLeadingSlash);
}

#[test]
fn refuses_empty_segments() {
    assert_eq!(refused("//"), TemplateError::EmptySegment);
    assert_eq!(refused("/a//b"), TemplateError::EmptySegment);
}

#[test]
fn refuses_query_fragment_and_whitespace() {
    assert_eq!(refused("/a?b=1"), TemplateError::Forbidden('?'));
    assert_eq!(refused("/a#top"), TemplateError::Forbidden('#'));
    assert_eq!(refused("/a b"), TemplateError::Forbidden(' '));
}

#[test]
fn refuses_axum_07_syntax() {
    assert_eq!(
        refused("/users/:id"),
        TemplateError::ColonParam("id".into())
    );
    assert_eq!(
        refused("/files/*rest"),
        TemplateError::StarWildcard("rest".into())
    );
    assert_eq!(
        refused("/files/*rest").to_string(),
        "path template uses the axum 0.7 syntax `*rest`; write `{*rest}` instead"
    );
    assert_eq!(
        refused("/users/:id").to_string(),
        "path template uses the axum 0.7 syntax `:id`; write `{id}` instead"
    );
}

#[test]
fn refuses_unbalanced_braces() {
    assert_eq!(refused("/a/{id"), TemplateError::Unbalanced('{'));
    assert_eq!(refused("/a/id}"), TemplateError::Unbalanced('}'));
    assert_eq!(refused("/a/}id{"), TemplateError::Unbalanced('}'));
    assert_eq!(refused("/a/{id}}"), TemplateError::Unbalanced('}'));
    assert_eq!(
        refused("/a/{{id}}"),
        TemplateError::SeveralParams("{{id}}".into())
    );
    assert_eq!(
        refused("/a/{x}{y}"),
        TemplateError::SeveralParams("{x}{y}".into())
    );
}

#[test]
fn refuses_parameters_inside_a_segment() {
    assert_eq!(
        refused("/a/x{id}"),
        TemplateError::PartialSegment("id".into())
    );
    assert_eq!(
        refused("/a/{id}.json"),
        TemplateError::PartialSegment("id".into())
    );
}

#[test]
fn refuses_bad_names() {
    assert_eq!(refused("/a/{}"), TemplateError::BadName(String::new()));
    assert_eq!(refused("/a/{*}"), TemplateError::BadName(String::new()));
    assert_eq!(refused("/a/{1d}"), TemplateError::BadName("1d".into()));
    assert_eq!(
        refused("/a/{the-id}"),
        TemplateError::BadName("the-id".into())
    );
    assert_eq!(refused("/a/{_}"), TemplateError::BadName("_".into()));
}

#[test]
fn refuses_duplicate_names() {
    assert_eq!(
        refused("/a/{id}/b/{id}"),
        TemplateError::DuplicateName("id".into())
    );
    assert_eq!(
        refused("/a/{id}/{*id}"),
        TemplateError::DuplicateName("id".into())
    );
}

#[test]
fn catch_all_must_be_last() {
    assert_eq!(
        refused("/a/{*rest}/b"),
        TemplateError::CatchAllNotLast("rest".into())
    );
    assert_eq!(
        refused("/a/{*rest}/"),
        TemplateError::CatchAllNotLast("rest".into())
    );
}
