use super::*;

fn request<'a>(method: AuthMethod, passwd: &'a [u8], salt: &'a [u8]) -> Request<'a> {
    Request {
        uri: b"/mail/auth",
        host: b"127.0.0.1",
        method,
        login: b"test@example.com",
        passwd,
        salt,
        protocol: b"pop3",
        login_attempt: 1,
        client_ip: b"127.0.0.1",
        client_host: b"",
        proxy_protocol: None,
        smtp: None,
        ssl: None,
        extra_headers: b"X-Auth-Key: secret\r\n",
        keepalive: false,
    }
}

#[test]
fn plain_request_exactly_as_stock() {
    let r = request(AuthMethod::Plain, b"pa ss%\x01", b"<1.2@x>\r\n").build();
    assert_eq!(
        String::from_utf8_lossy(&r),
        "GET /mail/auth HTTP/1.0\r\nHost: 127.0.0.1\r\nAuth-Method: plain\r\n\
         Auth-User: test@example.com\r\nAuth-Pass: pa%20ss%25%01\r\nAuth-Protocol: pop3\r\n\
         Auth-Login-Attempt: 1\r\nClient-IP: 127.0.0.1\r\nX-Auth-Key: secret\r\n\r\n"
    );
}

#[test]
fn apop_request_has_salt() {
    let r = request(AuthMethod::Apop, b"0123", b"<1.2@x>\r\n").build();
    let text = String::from_utf8_lossy(&r);
    assert!(text.contains("Auth-Method: apop\r\nAuth-User: test@example.com\r\nAuth-Pass: 0123\r\nAuth-Salt: <1.2@x>\r\nAuth-Protocol: pop3\r\n"), "{text}");
}

#[test]
fn optional_headers() {
    let mut req = request(AuthMethod::Plain, b"p", b"");
    req.proxy_protocol = Some(ProxyProtocolInfo {
        src_addr: b"192.0.2.1",
        src_port: 1234,
        dst_addr: b"192.0.2.2",
        dst_port: 110,
    });
    req.ssl = Some(SslInfo {
        protocol: b"TLSv1.3",
        cipher: b"TLS_AES_256_GCM_SHA384",
        ..Default::default()
    });
    let text = String::from_utf8_lossy(&req.build()).into_owned();
    assert!(text.contains("Proxy-Protocol-Addr: 192.0.2.1\r\nProxy-Protocol-Port: 1234\r\nProxy-Protocol-Server-Addr: 192.0.2.2\r\nProxy-Protocol-Server-Port: 110\r\n"));
    assert!(text.contains("Auth-SSL: on\r\nAuth-SSL-Protocol: TLSv1.3\r\nAuth-SSL-Cipher: TLS_AES_256_GCM_SHA384\r\nX-Auth-Key"));
}

#[test]
fn sha256_fingerprint_follows_the_sha1_one() {
    let mut req = request(AuthMethod::Plain, b"p", b"");
    let sha256 = hex_lower(&[0xab; 32]);
    req.ssl = Some(SslInfo {
        fingerprint: b"0123",
        fingerprint_sha256: &sha256,
        cert: b"pem",
        ..Default::default()
    });
    let text = String::from_utf8_lossy(&req.build()).into_owned();
    let expected = format!(
        "Auth-SSL-Fingerprint: 0123\r\nAuth-SSL-Fingerprint-SHA256: {}\r\nAuth-SSL-Cert: pem\r\n",
        "ab".repeat(32)
    );
    assert!(text.contains(&expected), "{text}");
    assert_eq!(hex_lower(&[0x00, 0x0f, 0xf0, 0xff]), b"000ff0ff");
}

fn parse(text: &[u8]) -> Response {
    match parse_response(text) {
        Ok(Some(r)) => r,
        other => panic!("{other:?}"),
    }
}

#[test]
fn ok_response() {
    let r = parse(b"HTTP/1.0 200 OK\r\nauth-status:  OK \r\nAuth-Server: 127.0.0.1\r\nAuth-Port: 8110\r\nAuth-Pass: x\r\n\r\nbody");
    let d = decide(r, false, true);
    assert!(
        matches!(d, Decision::Proxy { ref name, .. } if name == b"127.0.0.1:8110"),
        "{d:?}"
    );
}

#[test]
fn no_status_line() {
    let r = parse(b"Auth-Status: Invalid login or password\r\nAuth-Wait: 3\r\n\r\n");
    assert_eq!(
        decide(r, true, true),
        Decision::Refused {
            text: b"Invalid login or password".to_vec(),
            error_code: None,
            sleep: 3,
            sasl: None,
        }
    );
}

#[test]
fn incomplete_and_invalid() {
    assert_eq!(parse_response(b"HTTP/1.0 200"), Ok(None));
    assert_eq!(
        parse_response(b"HTTP/1.0 200 OK\r\nAuth-Status: OK\r\n"),
        Ok(None)
    );
    assert_eq!(
        parse_response(b"HTTP/1.0 200 OK\rX"),
        Err(ParseError::InvalidResponse)
    );
    assert_eq!(
        parse_response(b"HTTP/1.0 200 OK\r\nBad Header: x\r\n\r\n"),
        Err(ParseError::InvalidHeader)
    );
    assert_eq!(
        parse_response(b"HTTP/1.0 200 OK\r\nX_Y: x\r\n\r\n"),
        Err(ParseError::InvalidHeader)
    );
    assert_eq!(
        parse_response(b"HTTP/1.0 200 OK\r\nA: x\ry\r\n\r\n"),
        Err(ParseError::InvalidHeader)
    );
    assert_eq!(
        parse_response(b"\x00\x01garbage\r\n\r\n"),
        Err(ParseError::InvalidHeader)
    );
}

#[test]
fn header_names_values_and_line_ends() {
    let r = parse(
        b"HTTP/1.0 200 OK\nAUTH-SERVER:10.0.0.1\r\nauth-port: \t25 \nAuth-User:\r\n\
          Auth-Passwd: no\r\nAuth: no\r\nAuth-Wait: x1\r\nAuth-Error-Code: 451 4.3.0\r\n\
          Server: nginx\r\n\r\n",
    );
    assert_eq!(r.server, b"10.0.0.1");
    // spaces are trimmed, a tab is part of the value (as nginx)
    assert_eq!(r.port, b"\t25");
    assert_eq!(r.user.as_deref(), Some(&b""[..]));
    assert_eq!(r.pass, None, "Auth-Passwd is not Auth-Pass");
    assert_eq!(r.sleep, 0, "a bad Auth-Wait is ignored");
    assert_eq!(r.error_code.as_deref(), Some(&b"451 4.3.0"[..]));
    assert_eq!(
        parse_response(b"Auth-Status: OK\r\r\n\r\n"),
        Err(ParseError::InvalidHeader)
    );
    assert_eq!(parse_response(b"Auth-Status: OK\r"), Ok(None));
    assert_eq!(
        parse_response(b":x\r\n\r\n"),
        Err(ParseError::InvalidHeader)
    );
}

#[test]
fn every_split_gives_the_same_answer() {
    let full: &[u8] =
        b"HTTP/1.0 200 OK\r\nAuth-Status: OK\r\nAuth-Server: ::1\r\nAuth-Port: 110\r\n\r\n";
    let want = parse_response(full);
    for i in 0..full.len() {
        let part = parse_response(&full[..i]);
        assert!(part == Ok(None), "split {i}: {part:?}");
    }
    assert!(matches!(want, Ok(Some(_))));
}

#[test]
fn decisions() {
    let base = || Response {
        server: b"127.0.0.1".to_vec(),
        port: b"110".to_vec(),
        ..Default::default()
    };
    assert_eq!(
        decide(
            Response {
                wait: true,
                sleep: 2,
                ..base()
            },
            true,
            true
        ),
        Decision::Wait { sleep: 2 }
    );
    assert_eq!(
        decide(
            Response {
                server: Vec::new(),
                ..base()
            },
            true,
            true
        ),
        Decision::MissingServer
    );
    assert_eq!(decide(base(), false, true), Decision::MissingPassword);
    assert_eq!(
        decide(
            Response {
                server: b"example.com".to_vec(),
                ..base()
            },
            true,
            true
        ),
        Decision::InvalidServer(b"example.com".to_vec())
    );
    assert_eq!(
        decide(
            Response {
                port: b"0".to_vec(),
                ..base()
            },
            true,
            true
        ),
        Decision::InvalidPort(b"0".to_vec())
    );
    assert_eq!(
        decide(
            Response {
                port: b"65536".to_vec(),
                ..base()
            },
            true,
            true
        ),
        Decision::InvalidPort(b"65536".to_vec())
    );
    assert!(matches!(decide(base(), true, true), Decision::Proxy { .. }));
    // a later OK does not undo an earlier error, as in nginx
    let r = parse(b"Auth-Status: denied\r\nAuth-Status: OK\r\n\r\n");
    assert!(matches!(decide(r, true, true), Decision::Refused { .. }));
}

#[test]
fn atoi_like_nginx() {
    assert_eq!(response::atoi(b"3"), Some(3));
    assert_eq!(response::atoi(b""), None);
    assert_eq!(response::atoi(b"-1"), None);
    assert_eq!(response::atoi(b"99999999999999999999999"), None);
}

#[test]
fn an_empty_error_code_is_the_default() {
    let r = parse(b"HTTP/1.0 200 OK\r\nAuth-Status: No\r\nAuth-Error-Code: \r\n\r\n");
    assert_eq!(r.error_code, None);
    let r = parse(
        b"HTTP/1.0 200 OK\r\nAuth-Status: No\r\nAuth-Error-Code: 550 5.7.1\r\n\
          Auth-Error-Code:\r\n\r\n",
    );
    assert_eq!(r.error_code, None, "the last one counts, as in stock");
}

#[test]
fn smtp_backend_login_chosen_per_session() {
    let r = parse(b"HTTP/1.0 200 OK\r\nAuth-Status: OK\r\nAuth-Server: 127.0.0.1\r\nAuth-Port: 25\r\nAuth-SMTP-Auth: LOGIN\r\n\r\n");
    assert_eq!(r.smtp_auth, Some(crate::smtp::BackendAuth::Login));
    match decide(r, false, false) {
        Decision::Proxy { smtp_auth, .. } => {
            assert_eq!(smtp_auth, Some(crate::smtp::BackendAuth::Login))
        }
        other => panic!("{other:?}"),
    }
    let r = parse(b"Auth-Status: OK\r\nAuth-SMTP-Auth: off\r\nAuth-SMTP-Auth: bogus\r\n\r\n");
    assert_eq!(r.smtp_auth, Some(crate::smtp::BackendAuth::Off));
    assert_eq!(parse(b"Auth-Status: OK\r\n\r\n").smtp_auth, None);
}

#[test]
fn backend_tls_chosen_per_session() {
    use crate::starttls::BackendTls;
    let r = parse(b"HTTP/1.0 200 OK\r\nAuth-Status: OK\r\nAuth-Server: 127.0.0.1\r\nAuth-Port: 993\r\nauth-server-tls: STARTTLS\r\nAuth-Server-Name: imap.example\r\n\r\n");
    assert_eq!(r.server_tls, Some(BackendTls::StartTls));
    assert_eq!(r.server_tls_name.as_deref(), Some(&b"imap.example"[..]));
    match decide(r, true, false) {
        Decision::Proxy { tls, tls_name, .. } => {
            assert_eq!(tls, Some(BackendTls::StartTls));
            assert_eq!(tls_name.as_deref(), Some(&b"imap.example"[..]));
        }
        other => panic!("{other:?}"),
    }
    // the last known value counts; unknown values and an empty name are
    // no override
    let r = parse(b"Auth-Status: OK\r\nAuth-Server-TLS: on\r\nAuth-Server-TLS: maybe\r\nAuth-Server-Name: \r\n\r\n");
    assert_eq!(r.server_tls, Some(BackendTls::Implicit));
    assert_eq!(r.server_tls_name, None);
    let r = parse(b"Auth-Status: OK\r\nAuth-Server-TLS: off\r\n\r\n");
    assert_eq!(r.server_tls, Some(BackendTls::Off));
    let r = parse(b"Auth-Status: OK\r\n\r\n");
    assert_eq!((r.server_tls, r.server_tls_name), (None, None));
}

#[test]
fn error_sasl() {
    let r = parse(
        b"HTTP/1.0 200 OK\r\nAuth-Status: Invalid token\r\n\
          auth-error-sasl:  eyJzdGF0dXMiOiI0MDEifQ== \r\nAuth-Wait: 1\r\n\r\n",
    );
    assert_eq!(
        decide(r, true, true),
        Decision::Refused {
            text: b"Invalid token".to_vec(),
            error_code: None,
            sleep: 1,
            sasl: Some(b"eyJzdGF0dXMiOiI0MDEifQ==".to_vec()),
        }
    );
    let r = parse(b"Auth-Status: No\r\nAuth-Error-SASL: a\r\nAuth-Error-SASL:\r\n\r\n");
    assert_eq!(r.error_sasl, Some(Vec::new()), "the last one counts");
    // with an OK it is ignored
    let r = parse(
        b"Auth-Status: OK\r\nAuth-Server: 127.0.0.1\r\nAuth-Port: 1\r\nAuth-Error-SASL: x\r\n\r\n",
    );
    assert!(matches!(decide(r, true, true), Decision::Proxy { .. }));
}
