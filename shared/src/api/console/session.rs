//! Console sessions, stateless so that every api Lambda sandbox accepts
//! them: the login proves the API key once and gets a cookie
//! `expiry.nonce.mac` (HMAC-SHA-256 keyed by the API key, never the key
//! itself); every action carries a CSRF token derived from that session's
//! nonce. Changing the key ends every session. With `api.enable_auth` off
//! the MAC key is random per process and every visitor gets a session
//! without logging in (the token still guards the actions).
//!
//! The cookie is `HttpOnly`, `SameSite=Strict`, and `Secure` with the
//! `__Host-` prefix when the request came over https (directly or through
//! a proxy that says so in `X-Forwarded-Proto`/`Forwarded`, as API Gateway
//! does); over plain http it is sent only to a loopback host (see
//! [`Transport`]).

use super::super::guard::AuthKey;
use crate::config::ApiConfig;
use crate::secrets::Secret;
use axum::http::{HeaderMap, Uri, header};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::OsRng;
use chacha20poly1305::aead::rand_core::RngCore;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::net::IpAddr;
use subtle::ConstantTimeEq;

/// How long a login lasts.
pub(super) const SESSION_SECONDS: i64 = 12 * 3600;

/// How the request reached us, which decides the cookie's attributes and
/// whether a key may be typed in at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Transport {
    /// TLS (here or at a proxy): `Secure`, `__Host-` prefix.
    Https,
    /// Plain http to a loopback name or address (`ssh -L`, a port
    /// forward, the machine itself): the key never leaves the host, and
    /// browsers would drop a `Secure` cookie here, so it has none.
    LoopbackHttp,
    /// Plain http across a network: the key would travel in clear text, so
    /// the login form refuses it.
    NetworkHttp,
}

impl Transport {
    pub(super) fn of(headers: &HeaderMap, uri: &Uri) -> Self {
        let forwarded_https = headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
            || headers
                .get(header::FORWARDED)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.to_ascii_lowercase().split([';', ',']).any(|p| p.trim() == "proto=https"));
        if uri.scheme_str() == Some("https") || forwarded_https {
            return Transport::Https;
        }
        let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).or_else(|| uri.host()).unwrap_or("");
        if is_loopback_host(host) { Transport::LoopbackHttp } else { Transport::NetworkHttp }
    }

    fn cookie_name(self) -> &'static str {
        match self {
            Transport::Https => "__Host-mc_session",
            Transport::LoopbackHttp | Transport::NetworkHttp => "mc_session",
        }
    }
}

/// `localhost`, `*.localhost`, `127.0.0.0/8` or `::1`, with or without a port.
fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(
            host,
            |(name, port)| {
                if port.chars().all(|c| c.is_ascii_digit()) { name } else { host }
            },
        )
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost") || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// One browser's session: until when, and the nonce its CSRF token derives from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Session {
    expires: i64,
    nonce: String,
}

/// Issues and checks sessions and CSRF tokens.
pub(crate) struct Sessions {
    /// The API key (auth on) or a random per-process secret (auth off).
    mac_key: Secret,
    login_required: bool,
    key: AuthKey,
}

impl Sessions {
    pub(crate) fn from_config(api: &ApiConfig) -> Self {
        let configured = api.api_key.as_ref().filter(|k| !k.expose().is_empty() && api.enable_auth);
        let mac_key = configured.cloned().unwrap_or_else(|| Secret::new(random_token(32)));
        Self { mac_key, login_required: api.enable_auth, key: AuthKey::from_config(api) }
    }

    /// Whether a visitor must type the key (`api.enable_auth`).
    pub(super) fn login_required(&self) -> bool {
        self.login_required
    }

    /// The key check of the API itself (constant time).
    pub(super) fn key_accepted(&self, presented: &str) -> bool {
        self.key.accepts(Some(presented))
    }

    pub(super) fn open(&self, now: DateTime<Utc>) -> Session {
        Session { expires: now.timestamp() + SESSION_SECONDS, nonce: random_token(16) }
    }

    /// The `Set-Cookie` value that hands `session` to the browser.
    pub(super) fn set_cookie(&self, session: &Session, transport: Transport) -> String {
        let value = format!("{}.{}.{}", session.expires, session.nonce, self.mac("session", &session.payload()));
        cookie(transport, &value, SESSION_SECONDS)
    }

    /// The `Set-Cookie` value that ends the session in the browser.
    pub(super) fn clear_cookie(transport: Transport) -> String {
        cookie(transport, "", 0)
    }

    /// The request's valid, unexpired session, if it has one.
    pub(super) fn verify(&self, headers: &HeaderMap, transport: Transport, now: DateTime<Utc>) -> Option<Session> {
        let name = transport.cookie_name();
        let value = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find_map(|(n, v)| (n == name).then_some(v))?;
        let mut parts = value.splitn(3, '.');
        let (expires, nonce, mac) = (parts.next()?, parts.next()?, parts.next()?);
        let session = Session { expires: expires.parse().ok()?, nonce: nonce.to_owned() };
        let expected = self.mac("session", &session.payload());
        let genuine: bool = expected.as_bytes().ct_eq(mac.as_bytes()).into();
        (genuine && session.expires > now.timestamp()).then_some(session)
    }

    /// The token an action form of `session` carries.
    pub(super) fn csrf_token(&self, session: &Session) -> String {
        self.mac("csrf", &session.nonce)
    }

    pub(super) fn csrf_ok(&self, session: &Session, presented: &str) -> bool {
        self.csrf_token(session).as_bytes().ct_eq(presented.as_bytes()).into()
    }

    /// Base64url HMAC-SHA-256 of `purpose` and `message` (the purpose keeps a
    /// session's MAC from ever serving as a CSRF token and back).
    fn mac(&self, purpose: &str, message: &str) -> String {
        // HMAC takes keys of any length: `new_from_slice` cannot fail.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(self.mac_key.expose().as_bytes()) else {
            return String::new();
        };
        mac.update(b"memory-connector console v1\0");
        mac.update(purpose.as_bytes());
        mac.update(b"\0");
        mac.update(message.as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }
}

impl Session {
    fn payload(&self) -> String {
        format!("{}.{}", self.expires, self.nonce)
    }
}

fn cookie(transport: Transport, value: &str, max_age: i64) -> String {
    let secure = if transport == Transport::Https { "; Secure" } else { "" };
    format!("{}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}", transport.cookie_name())
}

/// `bytes` random bytes from the operating system, base64url.
fn random_token(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    OsRng.fill_bytes(&mut buffer);
    URL_SAFE_NO_PAD.encode(buffer)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn sessions(key: &str) -> Sessions {
        Sessions::from_config(&ApiConfig { enable_auth: true, api_key: Some(Secret::new(key)), ..Default::default() })
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    /// The cookie part of a `Set-Cookie` value, as a browser sends it back.
    fn sent_back(set_cookie: &str) -> String {
        set_cookie.split(';').next().unwrap().to_owned()
    }

    #[test]
    fn transport_decides_the_cookie() {
        let uri = Uri::from_static("/");
        let of = |pairs: &[(&'static str, &str)]| Transport::of(&headers(pairs), &uri);
        assert_eq!(of(&[("host", "127.0.0.1:9622")]), Transport::LoopbackHttp);
        assert_eq!(of(&[("host", "localhost")]), Transport::LoopbackHttp);
        assert_eq!(of(&[("host", "[::1]:80")]), Transport::LoopbackHttp);
        assert_eq!(of(&[("host", "127.9.9.9")]), Transport::LoopbackHttp);
        assert_eq!(of(&[("host", "192.168.1.5:9622")]), Transport::NetworkHttp);
        assert_eq!(of(&[("host", "localhost.evil.example")]), Transport::NetworkHttp);
        assert_eq!(of(&[("host", "[::2]:80")]), Transport::NetworkHttp);
        assert_eq!(of(&[("host", "x.example"), ("x-forwarded-proto", "https")]), Transport::Https);
        assert_eq!(of(&[("host", "x.example"), ("forwarded", "for=1.2.3.4;Proto=HTTPS")]), Transport::Https);
        let https = sessions("k").set_cookie(&sessions("k").open(Utc::now()), Transport::Https);
        assert!(https.starts_with("__Host-mc_session=") && https.ends_with("HttpOnly; SameSite=Strict; Secure"));
        let local = Sessions::clear_cookie(Transport::LoopbackHttp);
        assert_eq!(local, "mc_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict");
    }

    #[test]
    fn a_session_is_bound_to_the_key_the_clock_and_its_csrf_token() {
        let now = Utc::now();
        let sessions = sessions("the-key");
        let session = sessions.open(now);
        let cookie = sent_back(&sessions.set_cookie(&session, Transport::LoopbackHttp));
        assert!(!cookie.contains("the-key"));
        let request = headers(&[("cookie", &format!("theme=dark; {cookie}"))]);
        assert_eq!(sessions.verify(&request, Transport::LoopbackHttp, now), Some(session.clone()));
        // The `__Host-` cookie is the only one read over https.
        assert_eq!(sessions.verify(&request, Transport::Https, now), None);
        let later = now + chrono::TimeDelta::seconds(SESSION_SECONDS + 1);
        assert_eq!(sessions.verify(&request, Transport::LoopbackHttp, later), None, "expired");
        assert_eq!(self::sessions("new-key").verify(&request, Transport::LoopbackHttp, now), None, "key rotated");
        let (expires, rest) = cookie.split_once('=').unwrap().1.split_once('.').unwrap();
        let forged = format!("mc_session={}.{rest}", expires.parse::<i64>().unwrap() + 3600);
        assert_eq!(sessions.verify(&headers(&[("cookie", &forged)]), Transport::LoopbackHttp, now), None);
        let token = sessions.csrf_token(&session);
        assert!(sessions.csrf_ok(&session, &token));
        assert!(!sessions.csrf_ok(&session, ""));
        assert!(!sessions.csrf_ok(&sessions.open(now), &token), "tokens are per session");
        assert!(!cookie.contains(&token), "the token is not the cookie");
    }
}
