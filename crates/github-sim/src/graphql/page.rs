//! Relay connections: opaque cursors, and the window that `first`, `after`,
//! `last` and `before` cut from a listing.
//!
//! A cursor is an item's position in the listing (filtered and ordered as the
//! query asks), base64-encoded as GitHub's cursors are. Positions shift when
//! items are added in front of a cursor; GitHub keys its cursors by the sort
//! value instead, a difference that only shows when the world changes between
//! two pages of an `UPDATED_AT` listing.

use async_graphql::SimpleObject;

use super::errors;

/// The paging arguments of one connection field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PageArgs {
    pub first: Option<i32>,
    pub after: Option<String>,
    pub last: Option<i32>,
    pub before: Option<String>,
}

impl PageArgs {
    pub(crate) fn new(
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> Self {
        Self { first, after, last, before }
    }
}

/// One page of a listing, with each item's cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Page<T> {
    pub items: Vec<(String, T)>,
    pub info: PageInfo,
    pub total: usize,
}

impl<T> Page<T> {
    pub(crate) fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        let mut f = f;
        Page {
            items: self.items.into_iter().map(|(cursor, item)| (cursor, f(item))).collect(),
            info: self.info,
            total: self.total,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, SimpleObject)]
pub(crate) struct PageInfo {
    pub end_cursor: Option<String>,
    pub has_next_page: bool,
    pub has_previous_page: bool,
    pub start_cursor: Option<String>,
}

/// Cuts `items` to the window the arguments select. The static analysis has
/// already refused a connection without `first`/`last` or with one outside
/// 1..=100, so here they only bound the window.
pub(crate) fn page<T>(items: Vec<T>, args: &PageArgs) -> async_graphql::Result<Page<T>> {
    let total = items.len();
    let mut start = match &args.after {
        Some(cursor) => decode(cursor)?.saturating_add(1),
        None => 0,
    };
    let mut end = match &args.before {
        Some(cursor) => decode(cursor)?,
        None => total,
    };
    end = end.min(total);
    start = start.min(end);
    if let Some(first) = args.first {
        end = end.min(start + usize::try_from(first.max(0)).unwrap_or(0));
    }
    if let Some(last) = args.last {
        start = start.max(end.saturating_sub(usize::try_from(last.max(0)).unwrap_or(0)));
    }
    let items: Vec<(String, T)> = items
        .into_iter()
        .enumerate()
        .skip(start)
        .take(end - start)
        .map(|(index, item)| (encode(index), item))
        .collect();
    let info = PageInfo {
        start_cursor: items.first().map(|(cursor, _)| cursor.clone()),
        end_cursor: items.last().map(|(cursor, _)| cursor.clone()),
        has_next_page: end < total,
        has_previous_page: start > 0,
    };
    Ok(Page { items, info, total })
}

const CURSOR_PREFIX: &str = "cursor:sim:";
const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

pub(crate) fn encode(index: usize) -> String {
    base64(format!("{CURSOR_PREFIX}{index}").as_bytes())
}

fn decode(cursor: &str) -> async_graphql::Result<usize> {
    unbase64(cursor)
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| text.strip_prefix(CURSOR_PREFIX).and_then(|n| n.parse().ok()))
        .ok_or_else(|| {
            errors::typed(
                "INVALID_CURSOR_ARGUMENTS",
                format!("`{cursor}` does not appear to be a valid cursor."),
            )
        })
}

// Standard base64 with padding, written out: cursors are the only use, and a
// crate for ten lines is not worth its compile time.
fn base64(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn unbase64(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for byte in text.bytes() {
        let value = ALPHABET.iter().position(|&c| c == byte)?;
        acc = (acc << 6) | value as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> PageArgs {
        PageArgs { first, after, last, before }
    }

    #[test]
    fn base64_round_trips_and_matches_the_standard_alphabet() {
        assert_eq!(base64(b"cursor:v2:1"), "Y3Vyc29yOnYyOjE=");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b"abc"), "YWJj");
        for index in [0, 1, 99, 100, 12_345] {
            assert_eq!(decode(&encode(index)).expect("cursor"), index);
        }
        assert!(decode("not a cursor!").is_err());
        assert!(decode(&base64(b"cursor:other:1")).is_err());
    }

    #[test]
    fn first_and_after_walk_forward_and_last_and_before_walk_back() {
        let items: Vec<u32> = (0..250).collect();
        let one = page(items.clone(), &args(Some(100), None, None, None)).expect("page");
        assert_eq!(one.items.len(), 100);
        assert!(one.info.has_next_page && !one.info.has_previous_page);
        let two =
            page(items.clone(), &args(Some(100), one.info.end_cursor.clone(), None, None)).expect("page");
        assert_eq!(two.items[0].1, 100);
        let three =
            page(items.clone(), &args(Some(100), two.info.end_cursor.clone(), None, None)).expect("page");
        assert_eq!(three.items.iter().map(|(_, i)| *i).collect::<Vec<_>>(), (200..250).collect::<Vec<_>>());
        assert!(!three.info.has_next_page && three.info.has_previous_page);
        assert_eq!(three.total, 250);

        let tail = page(items.clone(), &args(None, None, Some(1), None)).expect("page");
        assert_eq!(tail.items.iter().map(|(_, i)| *i).collect::<Vec<_>>(), [249]);
        let before = page(items.clone(), &args(None, None, Some(2), tail.info.start_cursor)).expect("page");
        assert_eq!(before.items.iter().map(|(_, i)| *i).collect::<Vec<_>>(), [247, 248]);

        let empty = page(Vec::<u32>::new(), &args(Some(10), None, None, None)).expect("page");
        assert!(empty.items.is_empty() && empty.info.end_cursor.is_none() && !empty.info.has_next_page);
    }
}
