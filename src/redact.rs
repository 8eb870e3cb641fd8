//! Keeping secrets out of text that leaves the daemon: URLs in error messages.
//!
//! An RPC provider's URL often carries the account's key in its path or query
//! (`https://base-sepolia.g.alchemy.com/v2/<key>`), and transport errors quote the URL
//! they failed on. Error text shown by `/status`, stored in a job record, or answered to an
//! agent goes through [`urls`] first: each URL keeps its scheme, host and port, and loses
//! its user info, path, query and fragment.

/// What replaces a URL's path, query and fragment.
pub const ELIDED: &str = "/…";

/// `text` with every `http://`, `https://`, `ws://` or `wss://` URL cut to its scheme, host
/// and port (user info dropped), followed by [`ELIDED`] when anything else was cut.
pub fn urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some((start, scheme_len)) = next_scheme(rest) {
        out.push_str(&rest[..start]);
        let url = &rest[start..];
        let end = url
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | '`' | ')'))
            .unwrap_or(url.len());
        let (scheme, after) = url[..end].split_at(scheme_len);
        let authority_end = after.find(['/', '?', '#']).unwrap_or(after.len());
        let authority = &after[..authority_end];
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        out.push_str(scheme);
        out.push_str(host);
        if authority_end < after.len() || host.len() < authority.len() {
            out.push_str(ELIDED);
        }
        rest = &url[end..];
    }
    out.push_str(rest);
    out
}

/// The byte offset and length of the next URL scheme (`https://`...) in `text`.
fn next_scheme(text: &str) -> Option<(usize, usize)> {
    let lower = text.to_ascii_lowercase();
    ["https://", "http://", "wss://", "ws://"]
        .iter()
        .filter_map(|s| lower.find(s).map(|i| (i, s.len())))
        // At one offset "https://" and "http://" cannot both match; the earliest wins.
        .min_by_key(|(i, _)| *i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_in_paths_queries_and_user_info_are_cut() {
        assert_eq!(
            urls("error sending request for url (https://base-sepolia.g.alchemy.com/v2/KEY123)"),
            "error sending request for url (https://base-sepolia.g.alchemy.com/…)"
        );
        assert_eq!(
            urls("http://user:pw@127.0.0.1:8545?apikey=K and wss://node.example/ws/K2"),
            "http://127.0.0.1:8545/… and wss://node.example/…"
        );
        assert_eq!(urls("HTTPS://A.example/K"), "HTTPS://A.example/…");
    }

    #[test]
    fn text_without_secrets_is_unchanged() {
        for t in [
            "connection refused",
            "http://127.0.0.1:9002",
            "AXL at http://127.0.0.1:9002: timed out",
            "",
        ] {
            assert_eq!(urls(t), t);
        }
    }
}
