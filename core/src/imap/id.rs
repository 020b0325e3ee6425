//! IMAP `ID` (RFC 2971) before login: the client's list is checked and
//! never forwarded; the proxy answers with the fields `imap_id` configures,
//! or `NIL`.

/// RFC 2971's bounds: 30 pairs, field names of 30 octets, values of 1024.
const MAX_PAIRS: usize = 30;
const MAX_FIELD: usize = 30;
const MAX_VALUE: usize = 1024;

/// The untagged reply, `* ID NIL` or `* ID ("name" "value" ...)`, from
/// name/value pairs.
pub fn id_reply(pairs: &[&[u8]]) -> Vec<u8> {
    if pairs.is_empty() {
        return b"* ID NIL\r\n".to_vec();
    }
    let mut out = b"* ID (".to_vec();
    for (i, value) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        out.push(b'"');
        for &b in *value {
            if matches!(b, b'"' | b'\\') {
                out.push(b'\\');
            }
            out.push(b);
        }
        out.push(b'"');
    }
    out.extend_from_slice(b")\r\n");
    out
}

/// Why a configured `imap_id` list cannot be sent, if it cannot.
pub fn check_config(pairs: &[&[u8]]) -> Result<(), &'static str> {
    if pairs.len() % 2 != 0 {
        return Err("takes pairs of a field name and a value");
    }
    if pairs.len() > MAX_PAIRS.saturating_mul(2) {
        return Err("takes at most 30 pairs");
    }
    for (i, item) in pairs.iter().enumerate() {
        let max = if i % 2 == 0 { MAX_FIELD } else { MAX_VALUE };
        if item.len() > max || item.iter().any(|&b| !(0x20..0x7f).contains(&b)) {
            return Err("has a field name over 30 or a value over 1024 octets, or a byte that is not printable ASCII");
        }
    }
    Ok(())
}

/// Whether `list` (what follows `ID `) is `NIL` or a parenthesized list of
/// name/value pairs of quoted strings (values may be `NIL`), within RFC
/// 2971's bounds.
pub fn valid_list(list: &[u8]) -> bool {
    let list = list.trim_ascii();
    if list.eq_ignore_ascii_case(b"NIL") {
        return true;
    }
    let Some(inner) = list.strip_prefix(b"(").and_then(|l| l.strip_suffix(b")")) else {
        return false;
    };
    let mut rest = inner;
    let mut items = 0usize;
    loop {
        rest = rest.trim_ascii_start();
        if rest.is_empty() {
            break;
        }
        let field = items % 2 == 0;
        let len;
        (len, rest) = if let Some(quoted) = rest.strip_prefix(b"\"") {
            match quoted_string(quoted) {
                Some(found) => found,
                None => return false,
            }
        } else if !field
            && rest.len() >= 3
            && rest
                .get(..3)
                .is_some_and(|n| n.eq_ignore_ascii_case(b"NIL"))
        {
            (0, rest.get(3..).unwrap_or_default())
        } else {
            return false;
        };
        if len > if field { MAX_FIELD } else { MAX_VALUE } {
            return false;
        }
        // items are separated by a space
        if !(rest.is_empty() || rest.starts_with(b" ")) {
            return false;
        }
        items = items.saturating_add(1);
        if items > MAX_PAIRS.saturating_mul(2) {
            return false;
        }
    }
    items > 0 && items % 2 == 0
}

/// A quoted string's length and what follows its closing quote, `rest`
/// starting right after the opening one.
fn quoted_string(rest: &[u8]) -> Option<(usize, &[u8])> {
    let mut len = 0usize;
    let mut it = rest.iter().enumerate();
    while let Some((i, &b)) = it.next() {
        match b {
            b'"' => return Some((len, rest.get(i.saturating_add(1)..)?)),
            b'\\' => {
                let (_, &escaped) = it.next()?;
                if !matches!(escaped, b'"' | b'\\') {
                    return None;
                }
            }
            b'\r' | b'\n' | 0 => return None,
            _ => {}
        }
        len = len.saturating_add(1);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies() {
        assert_eq!(id_reply(&[]), b"* ID NIL\r\n");
        assert_eq!(
            id_reply(&[b"name", b"ngx \"mail\" rs"]),
            b"* ID (\"name\" \"ngx \\\"mail\\\" rs\")\r\n"
        );
        assert!(check_config(&[b"name", b"x"]).is_ok());
        assert!(check_config(&[b"name"]).is_err());
        assert!(check_config(&[b"name", b"a\tb"]).is_err());
    }

    #[test]
    fn client_lists() {
        for good in [
            &b"NIL"[..],
            b"nil",
            b"(\"name\" \"Thunderbird\" \"version\" \"115.0\")",
            b"(\"name\" NIL)",
            b"(\"x\" \"a \\\" b\")",
        ] {
            assert!(valid_list(good), "{}", String::from_utf8_lossy(good));
        }
        for bad in [
            &b""[..],
            b"()",
            b"(\"name\")",
            b"(\"name\" \"x\"",
            b"\"name\" \"x\"",
            b"(NIL \"x\")",
            b"(\"name\"\"x\")",
            b"(\"name\" \"x\") extra",
            b"(\"name\" {3}",
        ] {
            assert!(!valid_list(bad), "{}", String::from_utf8_lossy(bad));
        }
        let long_field = format!("(\"{}\" \"x\")", "f".repeat(31));
        assert!(!valid_list(long_field.as_bytes()));
        let many = format!("({})", vec!["\"f\" \"v\""; 31].join(" "));
        assert!(!valid_list(many.as_bytes()));
    }
}
