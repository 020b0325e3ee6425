use super::*;

fn login() -> Login {
    Login {
        server_name: b"proxy.example".to_vec(),
        xclient: true,
        smtp_auth: BackendAuth::Off,
        client_addr: b"192.0.2.1".to_vec(),
        client_ipv6: false,
        client_host: b"client.example".to_vec(),
        helo: b"client-helo".to_vec(),
        esmtp: true,
        login: b"us er+x".to_vec(),
        passwd: Some(b"secret".to_vec()),
        envelope: None,
    }
}

fn send(d: &mut LoginDialogue, reply: &[u8]) -> Vec<u8> {
    match d.on_data(reply, false) {
        UpstreamStep::Send(line) => line,
        other => panic!("{other:?}"),
    }
}

#[test]
fn xclient_then_client_helo() {
    let mut d = LoginDialogue::new(login());
    assert_eq!(send(&mut d, b"220 mx ESMTP\r\n"), b"EHLO proxy.example\r\n");
    assert_eq!(d.on_data(b"250-mx\r\n", false), UpstreamStep::NeedMore);
    assert_eq!(
        send(&mut d, b"250-mx\r\n250 XCLIENT ADDR NAME LOGIN\r\n"),
        b"XCLIENT ADDR=192.0.2.1 LOGIN=us+20er+2Bx NAME=client.example\r\n"
    );
    assert_eq!(send(&mut d, b"220 mx ESMTP\r\n"), b"EHLO client-helo\r\n");
    assert_eq!(
        d.on_data(b"250 mx\r\n", false),
        UpstreamStep::LoggedInReplacing(b"235 2.0.0 OK\r\n")
    );
}

#[test]
fn proxy_smtp_auth_sends_auth_plain() {
    let mut d = LoginDialogue::new(Login {
        xclient: false,
        smtp_auth: BackendAuth::Plain,
        esmtp: false,
        ..login()
    });
    assert_eq!(send(&mut d, b"220 mx\r\n"), b"HELO proxy.example\r\n");
    assert_eq!(
        send(&mut d, b"250 mx\r\n"),
        b"AUTH PLAIN AHVzIGVyK3gAc2VjcmV0\r\n"
    );
    assert_eq!(
        d.on_data(b"235 ok\r\n", false),
        UpstreamStep::LoggedInReplacing(b"235 2.0.0 OK\r\n")
    );
    let mut d = LoginDialogue::new(Login {
        xclient: false,
        smtp_auth: BackendAuth::Plain,
        passwd: None,
        ..login()
    });
    send(&mut d, b"220 mx\r\n");
    assert_eq!(
        d.on_data(b"250 mx\r\n", false),
        UpstreamStep::Failed("no password available")
    );
}

#[test]
fn proxy_smtp_auth_login_answers_both_prompts() {
    let mut d = LoginDialogue::new(Login {
        xclient: true,
        smtp_auth: BackendAuth::Login,
        helo: Vec::new(),
        ..login()
    });
    assert_eq!(send(&mut d, b"220 mx\r\n"), b"EHLO proxy.example\r\n");
    // the backend learns the login from AUTH, not from XCLIENT
    assert_eq!(
        send(&mut d, b"250 mx\r\n"),
        b"XCLIENT ADDR=192.0.2.1 NAME=client.example\r\n"
    );
    assert_eq!(send(&mut d, b"220 mx\r\n"), b"AUTH LOGIN\r\n");
    assert_eq!(d.action(), c"sending AUTH to upstream");
    assert_eq!(send(&mut d, b"334 VXNlcm5hbWU6\r\n"), b"dXMgZXIreA==\r\n");
    assert_eq!(send(&mut d, b"334 UGFzc3dvcmQ6\r\n"), b"c2VjcmV0\r\n");
    assert_eq!(
        d.on_data(b"235 2.7.0 ok\r\n", false),
        UpstreamStep::LoggedInReplacing(b"235 2.0.0 OK\r\n")
    );
    // a backend that refuses AUTH LOGIN itself
    let mut d = LoginDialogue::new(Login {
        xclient: false,
        smtp_auth: BackendAuth::Login,
        ..login()
    });
    send(&mut d, b"220 mx\r\n");
    send(&mut d, b"250 mx\r\n");
    assert_eq!(
        d.on_data(b"504 5.7.4 unrecognized\r\n", false),
        UpstreamStep::Refused {
            line: b"504 5.7.4 unrecognized".to_vec()
        }
    );
}

#[test]
fn backend_auth_values() {
    assert_eq!(BackendAuth::parse(b"on"), Some(BackendAuth::Plain));
    assert_eq!(BackendAuth::parse(b"PLAIN"), Some(BackendAuth::Plain));
    assert_eq!(BackendAuth::parse(b"login"), Some(BackendAuth::Login));
    assert_eq!(BackendAuth::parse(b"off"), Some(BackendAuth::Off));
    assert_eq!(BackendAuth::parse(b"cram-md5"), None);
}

#[test]
fn auth_none_replays_the_envelope() {
    let env = Some((b"MAIL FROM:<a@x>".to_vec(), b"RCPT TO:<b@y>".to_vec()));
    let mut d = LoginDialogue::new(Login {
        xclient: false,
        login: Vec::new(),
        envelope: env,
        ..login()
    });
    assert_eq!(send(&mut d, b"220 mx\r\n"), b"EHLO proxy.example\r\n");
    assert_eq!(send(&mut d, b"250 mx\r\n"), b"MAIL FROM:<a@x>\r\n");
    assert_eq!(send(&mut d, b"250 ok\r\n"), b"RCPT TO:<b@y>\r\n");
    assert_eq!(
        d.on_data(b"550 no such user\r\n", false),
        UpstreamStep::LoggedIn
    );
}

#[test]
fn refusals_and_encoding() {
    let mut d = LoginDialogue::new(login());
    assert_eq!(
        d.on_data(b"554 go away\r\n", false),
        UpstreamStep::Refused {
            line: b"554 go away".to_vec()
        }
    );
    let mut d = LoginDialogue::new(Login {
        client_host: b"evil\r\nRCPT".to_vec(),
        client_ipv6: true,
        client_addr: b"::1".to_vec(),
        ..login()
    });
    send(&mut d, b"220 mx\r\n");
    assert_eq!(
        send(&mut d, b"250 mx\r\n"),
        b"XCLIENT ADDR=IPV6:::1 LOGIN=us+20er+2Bx NAME=evil+0D+0ARCPT\r\n"
    );
    assert_eq!(d.on_data(b"no line end", true), UpstreamStep::TooLong);
}

#[test]
fn xtext_values() {
    let mut out = Vec::new();
    xtext(b"a=b c+\x7f\xc3\xa9", &mut out);
    assert_eq!(out, b"a+3Db+20c+2B+7F+C3+A9");
    for (value, want) in [
        (&b""[..], &b""[..]),
        (b"plain", b"plain"),
        (b"=", b"+3D"),
        (b"==", b"+3D+3D"),
        (b"end ", b"end+20"),
        (b"\x00x\x01", b"+00x+01"),
    ] {
        out.clear();
        xtext(value, &mut out);
        assert_eq!(out, want, "{value:?}");
    }
}
