//! The `Link` header GitHub paginates with (pure).

/// The `rel="next"` target of a `Link` header, if any.
pub fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let mut pieces = part.split(';');
        let target = pieces.next()?.trim();
        let target = target.strip_prefix('<')?.strip_suffix('>')?;
        let is_next = pieces.any(|param| {
            let param = param.trim();
            param
                .strip_prefix("rel=")
                .is_some_and(|rel| rel.trim_matches('"').split(' ').any(|r| r == "next"))
        });
        is_next.then(|| target.to_owned())
    })
}

/// The raw (still URL-encoded) value of query parameter `name` in `url`:
/// what a cursor-paged listing's next link carries, to be sent back as is.
pub fn query_value(url: &str, name: &str) -> Option<String> {
    let (_, query) = url.split_once('?')?;
    let query = query.split('#').next().unwrap_or(query);
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name && !value.is_empty()).then(|| value.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_found_by_name_and_kept_encoded() {
        let next = "https://api.github.com/app/hook/deliveries?per_page=100&cursor=v1_12%3D3#x";
        assert_eq!(query_value(next, "cursor").as_deref(), Some("v1_12%3D3"));
        assert_eq!(query_value(next, "per_page").as_deref(), Some("100"));
        assert_eq!(query_value(next, "page"), None);
        assert_eq!(query_value("https://x/y?cursor=", "cursor"), None);
        assert_eq!(query_value("https://x/y", "cursor"), None);
    }

    #[test]
    fn finds_next_among_githubs_relations() {
        let header = r#"<https://api.github.com/repositories/1300192/issues?page=2>; rel="prev", <https://api.github.com/repositories/1300192/issues?page=4>; rel="next", <https://api.github.com/repositories/1300192/issues?page=515>; rel="last", <https://api.github.com/repositories/1300192/issues?page=1>; rel="first""#;
        assert_eq!(
            next_link(header).as_deref(),
            Some("https://api.github.com/repositories/1300192/issues?page=4")
        );
    }

    #[test]
    fn no_next_on_the_last_page_or_garbage() {
        assert_eq!(next_link(r#"<https://x/a?page=1>; rel="first", <https://x/a?page=4>; rel="prev""#), None);
        assert_eq!(next_link(""), None);
        assert_eq!(next_link("garbage; rel=next"), None);
        assert_eq!(next_link("<https://x/a?page=2>; rel=next").as_deref(), Some("https://x/a?page=2"));
    }
}
