//! The path the auth rules judge: the request path as the router routes it, and then some.
//! Percent-escapes are decoded (all of them, `%2F` too, any case), repeated slashes merged,
//! `.` and `..` segments resolved, a trailing slash dropped, and the `/channel` alias mapped to
//! `/channels`. Every spelling that reaches a handler therefore normalises to that handler's
//! canonical path, so a rule on it cannot be walked around; a spelling the router would not
//! route at all may be judged stricter, never looser. What cannot be normalised (a broken
//! escape, bytes that are not UTF-8, a `..` above the root, a control character) is refused.

/// Why a path could not be normalised (the request gets a `400`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the request path cannot be normalised: {0}")]
pub struct BadPath(pub &'static str);

/// The canonical form of a raw request path (without its query).
pub fn normalise(raw: &str) -> Result<String, BadPath> {
    let decoded = percent_decode(raw)?;
    if decoded.chars().any(char::is_control) {
        return Err(BadPath("control character"));
    }
    let mut segments: Vec<&str> = Vec::new();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop().ok_or(BadPath("`..` above the root"))?;
            }
            s => segments.push(s),
        }
    }
    if segments.first() == Some(&"channel") {
        segments[0] = "channels";
    }
    Ok(format!("/{}", segments.join("/")))
}

/// Decodes every `%XX` escape; hand-written because the only crates that do it either leave
/// malformed escapes in place silently (we must refuse them) or pull a URL parser for one loop.
fn percent_decode(raw: &str) -> Result<String, BadPath> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or(BadPath("truncated escape"))?;
            let hex = std::str::from_utf8(hex).map_err(|_| BadPath("broken escape"))?;
            let byte = u8::from_str_radix(hex, 16).map_err(|_| BadPath("broken escape"))?;
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| BadPath("not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_of_a_route_normalises_to_its_canonical_path() {
        for raw in [
            "/channels",
            "/channel",
            "/%63hannels",
            "/channel%73",
            "/chann%65ls",
            "/%63%68%61%6E%6E%65%6C%73",
            "/%63%68%61%6e%6e%65%6c%73",
            "//channels",
            "/channels/",
            "/./channels",
            "/x/../channels",
            "/channels/.",
            "/channels//",
        ] {
            assert_eq!(normalise(raw).as_deref(), Ok("/channels"), "{raw}");
        }
        assert_eq!(normalise("/channels%2Fabc").as_deref(), Ok("/channels/abc"));
        assert_eq!(
            normalise("/channel/a/connect").as_deref(),
            Ok("/channels/a/connect")
        );
        assert_eq!(normalise("/channelx").as_deref(), Ok("/channelx"));
        assert_eq!(normalise("/").as_deref(), Ok("/"));
        assert_eq!(normalise("").as_deref(), Ok("/"));
    }

    #[test]
    fn paths_that_cannot_be_normalised_are_refused() {
        for raw in [
            "/%", "/%6", "/%zz", "/%ff", "/..", "/a/../..", "/%00", "/a%0Ab",
        ] {
            assert!(normalise(raw).is_err(), "{raw}");
        }
    }
}
