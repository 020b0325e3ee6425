//! Base64 with the exact leniency of nginx's `ngx_decode_base64`, so that the
//! same client input is accepted or refused as stock nginx does: decoding
//! stops at the first `=`, padding is optional, and a length of 4n+1
//! significant characters is an error.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// A character's six bits, by range rather than a search of ALPHABET.
fn value(ch: u8) -> Option<u32> {
    let v = match ch {
        b'A'..=b'Z' => ch.wrapping_sub(b'A'),
        b'a'..=b'z' => ch.wrapping_sub(b'a').wrapping_add(26),
        b'0'..=b'9' => ch.wrapping_sub(b'0').wrapping_add(52),
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    };
    Some(u32::from(v))
}

/// Decodes `src`; `None` when nginx would refuse it.
pub fn decode(src: &[u8]) -> Option<Vec<u8>> {
    let significant = src.iter().position(|&b| b == b'=').unwrap_or(src.len());
    let data = src.get(..significant)?;
    if data.len() % 4 == 1 {
        return None;
    }
    // three bytes per four characters: never more than the input
    let mut out = Vec::with_capacity(data.len());
    for chunk in data.chunks(4) {
        let mut acc: u32 = 0;
        for &ch in chunk {
            acc = (acc << 6) | value(ch)?;
        }
        let bytes = acc.to_be_bytes();
        match chunk.len() {
            4 => out.extend_from_slice(bytes.get(1..4)?),
            3 => {
                let v = (acc << 6).to_be_bytes();
                out.extend_from_slice(v.get(1..3)?);
            }
            2 => {
                let v = (acc << 12).to_be_bytes();
                out.push(*v.get(1)?);
            }
            _ => return None,
        }
    }
    Some(out)
}

/// Encodes `src` with padding, as `ngx_encode_base64`.
pub fn encode(src: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(src.len().div_ceil(3).saturating_mul(4));
    for chunk in src.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let sextet = |shift: u32| {
            ALPHABET
                .get(((n >> shift) & 63) as usize)
                .copied()
                .unwrap_or(b'=')
        };
        out.push(sextet(18));
        out.push(sextet(12));
        out.push(if chunk.len() > 1 { sextet(6) } else { b'=' });
        out.push(if chunk.len() > 2 { sextet(0) } else { b'=' });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for s in [
            &b""[..],
            b"a",
            b"ab",
            b"abc",
            b"\0test\0secret",
            b"\xff\xfe\xfd\xfc",
        ] {
            assert_eq!(decode(&encode(s)).as_deref(), Some(s));
        }
        assert_eq!(encode(b"Username:"), b"VXNlcm5hbWU6");
    }

    #[test]
    fn nginx_leniency() {
        assert_eq!(decode(b"dXNlcg").as_deref(), Some(&b"user"[..]));
        assert_eq!(decode(b"dXNlcg==").as_deref(), Some(&b"user"[..]));
        // everything after the first '=' is ignored, as ngx_decode_base64 does
        assert_eq!(decode(b"dXNlcg==!!").as_deref(), Some(&b"user"[..]));
        assert_eq!(decode(b"").as_deref(), Some(&b""[..]));
    }

    #[test]
    fn every_byte_has_its_alphabet_value_or_none() {
        for ch in 0..=u8::MAX {
            let want = ALPHABET.iter().position(|&a| a == ch).map(|v| v as u32);
            assert_eq!(value(ch), want, "byte {ch:#04x}");
        }
    }

    #[test]
    fn refuses_what_nginx_refuses() {
        assert_eq!(decode(b"*"), None);
        assert_eq!(decode(b"dXNlc"), None); // 4n+1
        assert_eq!(decode(b"dX Nl"), None);
        assert_eq!(decode(b"dXNl\0cg"), None);
        assert_eq!(decode(b"\xc3\xa9"), None);
    }
}
