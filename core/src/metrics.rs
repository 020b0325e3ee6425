//! The Prometheus text exposition (format 0.0.4) of the mail metrics: the
//! shell copies the shared counters into a `Snapshot`, this writes it.
//! Labels are fixed names (protocol, mechanism, result, reason,
//! direction): no label ever carries a user name.

use std::fmt::Write as _;

use crate::session_log::{AuthResult, CloseReason};
use crate::AuthMethod;

pub const PROTOCOLS: [&str; 4] = ["pop3", "imap", "smtp", "sieve"];
/// `Auth-Method` names, numbered by `mechanism_index`.
pub const MECHANISMS: [&str; 7] = [
    "plain",
    "apop",
    "cram-md5",
    "external",
    "xoauth2",
    "oauthbearer",
    "none",
];

/// A method's place in `MECHANISMS` (a new method fails to build here).
pub fn mechanism_index(m: AuthMethod) -> usize {
    match m {
        AuthMethod::Plain => 0,
        AuthMethod::Apop => 1,
        AuthMethod::CramMd5 => 2,
        AuthMethod::External => 3,
        AuthMethod::XOauth2 => 4,
        AuthMethod::OauthBearer => 5,
        AuthMethod::None => 6,
    }
}
pub const DIRECTIONS: [&str; 2] = ["client_to_backend", "backend_to_client"];
/// Upper bounds of the latency histograms' buckets, in milliseconds
/// (`+Inf` follows).
pub const BUCKETS_MS: [u64; 11] = [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000];

pub const P: usize = PROTOCOLS.len();
pub const M: usize = MECHANISMS.len();
pub const R: usize = AuthResult::ALL.len();
pub const C: usize = CloseReason::ALL.len();
/// The buckets and `+Inf`.
pub const B: usize = BUCKETS_MS.len() + 1;

/// The index of a protocol's name, if it is one of ours.
pub fn protocol_index(name: &[u8]) -> Option<usize> {
    PROTOCOLS.iter().position(|p| p.as_bytes() == name)
}

/// The bucket (non-cumulative) a latency falls in.
pub fn bucket_index(ms: u64) -> usize {
    BUCKETS_MS
        .iter()
        .position(|&b| ms <= b)
        .unwrap_or(BUCKETS_MS.len())
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Histogram {
    /// Per bucket, not cumulative; the last is `+Inf`'s own.
    pub buckets: [u64; B],
    pub sum_ms: u64,
}

/// The counters, as read from the zone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub connections: [u64; P],
    pub active: [i64; P],
    pub auth: [[[u64; R]; M]; P],
    pub sessions: [[u64; C]; P],
    pub bytes: [[u64; 2]; P],
    pub tls_handshakes: [u64; P],
    pub tls_failures: [u64; P],
    pub auth_latency: [Histogram; P],
    pub connect_latency: [Histogram; P],
}

/// A label value, escaped as the text format wants (`\\`, `\"`, `\n`).
pub fn label_value(out: &mut String, v: &str) {
    for ch in v.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: &str) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(k);
            out.push_str("=\"");
            label_value(out, v);
            out.push('"');
        }
        out.push('}');
    }
    out.push(' ');
    out.push_str(value);
    out.push('\n');
}

fn seconds(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

fn histogram(out: &mut String, name: &str, help: &str, h: &[Histogram; P]) {
    header(out, name, "histogram", help);
    let bucket = format!("{name}_bucket");
    for (proto, h) in PROTOCOLS.iter().zip(h) {
        let mut cumulative = 0u64;
        for (i, n) in h.buckets.iter().enumerate() {
            cumulative = cumulative.saturating_add(*n);
            let le = BUCKETS_MS
                .get(i)
                .map_or("+Inf".to_string(), |&b| seconds(b));
            sample(
                out,
                &bucket,
                &[("protocol", proto), ("le", &le)],
                &cumulative.to_string(),
            );
        }
        sample(
            out,
            &format!("{name}_sum"),
            &[("protocol", proto)],
            &seconds(h.sum_ms),
        );
        sample(
            out,
            &format!("{name}_count"),
            &[("protocol", proto)],
            &cumulative.to_string(),
        );
    }
}

/// The whole exposition; `version` is the module's, `nginx` nginx's.
pub fn render(s: &Snapshot, version: &str, nginx: &str) -> String {
    let mut out = String::with_capacity(16 * 1024);
    header(
        &mut out,
        "nginx_mail_build_info",
        "gauge",
        "Build of the mail proxy module.",
    );
    sample(
        &mut out,
        "nginx_mail_build_info",
        &[("version", version), ("nginx", nginx)],
        "1",
    );

    let name = "nginx_mail_connections_total";
    header(&mut out, name, "counter", "Client sessions started.");
    for (p, n) in PROTOCOLS.iter().zip(&s.connections) {
        sample(&mut out, name, &[("protocol", p)], &n.to_string());
    }
    let name = "nginx_mail_connections_active";
    header(&mut out, name, "gauge", "Client sessions open now.");
    for (p, n) in PROTOCOLS.iter().zip(&s.active) {
        sample(&mut out, name, &[("protocol", p)], &n.max(&0).to_string());
    }
    let name = "nginx_mail_auth_total";
    header(
        &mut out,
        name,
        "counter",
        "Answers of the auth server, by result.",
    );
    for (p, by_mech) in PROTOCOLS.iter().zip(&s.auth) {
        for (m, by_result) in MECHANISMS.iter().zip(by_mech) {
            for (r, n) in AuthResult::ALL.iter().zip(by_result) {
                let labels = [("protocol", *p), ("mechanism", *m), ("result", r.name())];
                sample(&mut out, name, &labels, &n.to_string());
            }
        }
    }
    let name = "nginx_mail_sessions_total";
    header(
        &mut out,
        name,
        "counter",
        "Client sessions ended, by reason.",
    );
    for (p, by_reason) in PROTOCOLS.iter().zip(&s.sessions) {
        for (r, n) in CloseReason::ALL.iter().zip(by_reason) {
            sample(
                &mut out,
                name,
                &[("protocol", p), ("reason", r.name())],
                &n.to_string(),
            );
        }
    }
    let name = "nginx_mail_bytes_total";
    header(
        &mut out,
        name,
        "counter",
        "Bytes relayed after login, counted at the session's end.",
    );
    for (p, by_dir) in PROTOCOLS.iter().zip(&s.bytes) {
        for (d, n) in DIRECTIONS.iter().zip(by_dir) {
            sample(
                &mut out,
                name,
                &[("protocol", p), ("direction", d)],
                &n.to_string(),
            );
        }
    }
    let name = "nginx_mail_tls_handshakes_total";
    header(
        &mut out,
        name,
        "counter",
        "Client sessions that completed a TLS handshake.",
    );
    for (p, n) in PROTOCOLS.iter().zip(&s.tls_handshakes) {
        sample(&mut out, name, &[("protocol", p)], &n.to_string());
    }
    let name = "nginx_mail_tls_handshake_failures_total";
    header(
        &mut out,
        name,
        "counter",
        "Client TLS handshakes (listen ssl or STARTTLS) that failed.",
    );
    for (p, n) in PROTOCOLS.iter().zip(&s.tls_failures) {
        sample(&mut out, name, &[("protocol", p)], &n.to_string());
    }
    histogram(
        &mut out,
        "nginx_mail_auth_http_duration_seconds",
        "Time the auth server took to answer.",
        &s.auth_latency,
    );
    histogram(
        &mut out,
        "nginx_mail_backend_connect_duration_seconds",
        "Time to connect to the backend.",
        &s.connect_latency,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_labels() {
        let mut s = String::new();
        label_value(&mut s, "a\"b\\c\nd");
        assert_eq!(s, "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn mechanisms() {
        for m in [
            AuthMethod::Plain,
            AuthMethod::Apop,
            AuthMethod::CramMd5,
            AuthMethod::External,
            AuthMethod::XOauth2,
            AuthMethod::OauthBearer,
            AuthMethod::None,
        ] {
            assert_eq!(MECHANISMS[mechanism_index(m)], m.http_name());
        }
    }

    #[test]
    fn buckets() {
        assert_eq!(bucket_index(0), 0);
        assert_eq!(bucket_index(5), 0);
        assert_eq!(bucket_index(6), 1);
        assert_eq!(bucket_index(10_000), 10);
        assert_eq!(bucket_index(10_001), 11);
    }

    #[test]
    fn renders() {
        let mut s = Snapshot::default();
        s.connections[0] = 3;
        s.active[1] = 2;
        s.auth[0][0][1] = 1;
        s.auth_latency[0].buckets[0] = 1;
        s.auth_latency[0].buckets[11] = 1;
        s.auth_latency[0].sum_ms = 12_345;
        let text = render(&s, "0.1.0", "1.28.3");
        assert!(text.contains("nginx_mail_build_info{version=\"0.1.0\",nginx=\"1.28.3\"} 1\n"));
        assert!(text.contains("nginx_mail_connections_total{protocol=\"pop3\"} 3\n"));
        assert!(text.contains("nginx_mail_connections_active{protocol=\"imap\"} 2\n"));
        assert!(text.contains(
            "nginx_mail_auth_total{protocol=\"pop3\",mechanism=\"plain\",result=\"refused\"} 1\n"
        ));
        assert!(text.contains(
            "nginx_mail_auth_http_duration_seconds_bucket{protocol=\"pop3\",le=\"0.005\"} 1\n"
        ));
        assert!(text.contains(
            "nginx_mail_auth_http_duration_seconds_bucket{protocol=\"pop3\",le=\"10.000\"} 1\n"
        ));
        assert!(text.contains(
            "nginx_mail_auth_http_duration_seconds_bucket{protocol=\"pop3\",le=\"+Inf\"} 2\n"
        ));
        assert!(
            text.contains("nginx_mail_auth_http_duration_seconds_sum{protocol=\"pop3\"} 12.345\n")
        );
        assert!(text.contains("nginx_mail_auth_http_duration_seconds_count{protocol=\"pop3\"} 2\n"));
    }
}
