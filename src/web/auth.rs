//! Who may use the console: the access token (Bearer header or a login-form session cookie),
//! the throttle on wrong tokens, and the same-origin checks that stop cross-site requests.
//!
//! Without a token the console only listens on loopback; then the Host header must name
//! loopback too, so a web page that rebinds its own DNS name to 127.0.0.1 gets nothing.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::http::Request;

pub const COOKIE: &str = "kneescreen_session";
/// A login lasts a working day.
const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
const MAX_SESSIONS: usize = 64;
/// Wrong tokens allowed before attempts are slowed down.
const FREE_FAILURES: u32 = 5;
const MAX_LOCKOUT: Duration = Duration::from_secs(60);

/// How a request proved it may use the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No token is configured (loopback only).
    Open,
    /// `Authorization: Bearer <token>`: a program, not a browser.
    Bearer,
    /// The session cookie set by the login form: a browser.
    Session,
}

/// What the credential check concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed(Access),
    /// No credentials, or wrong ones.
    Denied,
    /// Too many wrong tokens lately: wait this many seconds.
    Throttled(u64),
}

pub struct Auth {
    token: Option<String>,
    sessions: Mutex<HashMap<String, Instant>>,
    failures: Mutex<(u32, Option<Instant>)>,
}

impl Auth {
    pub fn new(token: Option<String>) -> Auth {
        Auth {
            token,
            sessions: Mutex::new(HashMap::new()),
            failures: Mutex::new((0, None)),
        }
    }

    pub fn token_required(&self) -> bool {
        self.token.is_some()
    }

    /// Checks the request's Bearer token or session cookie.
    pub fn check(&self, req: &Request) -> Verdict {
        let Some(token) = &self.token else {
            return Verdict::Allowed(Access::Open);
        };
        if let Some(id) = cookie(req, COOKIE) {
            if self.session_valid(id) {
                return Verdict::Allowed(Access::Session);
            }
        }
        let Some(auth) = req.header("authorization") else {
            return Verdict::Denied;
        };
        let presented = auth
            .strip_prefix("Bearer ")
            .or_else(|| auth.strip_prefix("bearer "))
            .unwrap_or("")
            .trim();
        self.attempt(presented, token, Access::Bearer)
    }

    /// Checks a PIN typed into the login form; on success returns a new session id.
    pub fn login(&self, pin: &str) -> Result<String, Verdict> {
        let Some(token) = &self.token else {
            return Err(Verdict::Denied);
        };
        match self.attempt(pin.trim(), token, Access::Session) {
            Verdict::Allowed(_) => new_session_id()
                .inspect(|id| self.add_session(id.clone()))
                .ok_or(Verdict::Denied),
            other => Err(other),
        }
    }

    pub fn logout(&self, req: &Request) {
        if let (Some(id), Ok(mut s)) = (cookie(req, COOKIE), self.sessions.lock()) {
            s.remove(id);
        }
    }

    fn attempt(&self, presented: &str, token: &str, access: Access) -> Verdict {
        let Ok(mut f) = self.failures.lock() else {
            return Verdict::Denied;
        };
        if let Some(until) = f.1 {
            let now = Instant::now();
            if until > now {
                return Verdict::Throttled((until - now).as_secs().max(1));
            }
        }
        if !presented.is_empty() && constant_time_eq(presented.as_bytes(), token.as_bytes()) {
            *f = (0, None);
            return Verdict::Allowed(access);
        }
        f.0 = f.0.saturating_add(1);
        if f.0 > FREE_FAILURES {
            // 1 s, 2 s, 4 s … up to a minute: a 4-digit PIN then takes days to guess.
            let secs = 1u64 << (f.0 - FREE_FAILURES - 1).min(6);
            f.1 = Some(Instant::now() + MAX_LOCKOUT.min(Duration::from_secs(secs)));
        }
        Verdict::Denied
    }

    fn session_valid(&self, id: &str) -> bool {
        let Ok(mut s) = self.sessions.lock() else {
            return false;
        };
        match s.get(id) {
            Some(t) if t.elapsed() < SESSION_LIFETIME => true,
            Some(_) => {
                s.remove(id);
                false
            }
            None => false,
        }
    }

    fn add_session(&self, id: String) {
        if let Ok(mut s) = self.sessions.lock() {
            s.retain(|_, t| t.elapsed() < SESSION_LIFETIME);
            if s.len() >= MAX_SESSIONS {
                if let Some(oldest) = s.iter().min_by_key(|(_, t)| **t).map(|(k, _)| k.clone()) {
                    s.remove(&oldest);
                }
            }
            s.insert(id, Instant::now());
        }
    }
}

/// The `Set-Cookie` value for a new session: not readable by scripts, never sent cross-site.
/// The session cookie; `secure` (over TLS) keeps browsers from ever sending it in clear.
pub fn session_cookie(id: &str, secure: bool) -> String {
    format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        SESSION_LIFETIME.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

pub fn cleared_cookie(secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}")
}

fn cookie<'r>(req: &'r Request, name: &str) -> Option<&'r str> {
    req.header("cookie")?.split(';').find_map(|c| {
        let (k, v) = c.split_once('=')?;
        (k.trim() == name).then(|| v.trim())
    })
}

/// 128 random bits from the kernel, as hex.
fn new_session_id() -> Option<String> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .ok()?;
    Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Compares without stopping at the first difference, so timing does not reveal the prefix.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0xff);
        diff |= usize::from(x ^ y);
    }
    diff == 0
}

/// The host part of a `Host` header or of an origin's authority (`[::1]:8080` → `[::1]`).
fn host_only(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority.split_inclusive(']').next().unwrap_or(authority);
    }
    authority.split(':').next().unwrap_or(authority)
}

/// True when the Host header names this machine's loopback interface. Without a token this is
/// what stops DNS rebinding: the attacker's page would send its own host name.
pub fn host_is_loopback(req: &Request) -> bool {
    let Some(host) = req.header("host") else {
        return false;
    };
    let h = host_only(host).to_ascii_lowercase();
    if h == "localhost" || h.ends_with(".localhost") || h == "[::1]" {
        return true;
    }
    h.parse::<std::net::Ipv4Addr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// Why a request that changes something was refused as cross-site.
pub fn cross_site_reason(req: &Request, access: Access) -> Option<&'static str> {
    if access == Access::Bearer {
        // Browsers cannot attach an Authorization header to a cross-site request.
        return None;
    }
    let host = req.header("host").unwrap_or("");
    if let Some(site) = req.header("sec-fetch-site") {
        return (!site.eq_ignore_ascii_case("same-origin"))
            .then_some("cross-site request refused (Sec-Fetch-Site)");
    }
    if let Some(origin) = req.header("origin") {
        return (!same_authority(origin, host)).then_some("cross-site request refused (Origin)");
    }
    if let Some(referer) = req.header("referer") {
        return (!same_authority(referer, host)).then_some("cross-site request refused (Referer)");
    }
    // Every browser labels a POST with Origin or Sec-Fetch-Site, so an unlabelled request comes
    // from a program (curl, a script). That is fine on loopback without a token, where any local
    // program could add the headers anyway; with a token, a program must present it.
    match access {
        Access::Open => None,
        _ => Some("send the token as Authorization: Bearer, or use the console's own pages"),
    }
}

/// `http://host:port[/path]` names the same host and port as the Host header.
fn same_authority(url: &str, host: &str) -> bool {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    let Some(rest) = rest else {
        return false; // "null" (sandboxed or privacy-sensitive contexts) and anything odd
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    !host.is_empty() && authority.eq_ignore_ascii_case(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_comparison() {
        assert!(constant_time_eq(b"2468", b"2468"));
        assert!(!constant_time_eq(b"2468", b"2469"));
        assert!(!constant_time_eq(b"246", b"2468"));
        assert!(!constant_time_eq(b"24680", b"2468"));
        assert!(!constant_time_eq(b"", b"x"));
    }

    #[test]
    fn authorities() {
        assert!(same_authority("http://127.0.0.1:8080", "127.0.0.1:8080"));
        assert!(same_authority(
            "http://LocalHost:8080/page?x",
            "localhost:8080"
        ));
        assert!(!same_authority("http://127.0.0.1:8081", "127.0.0.1:8080"));
        assert!(!same_authority(
            "http://127.0.0.1:8080.evil.com",
            "127.0.0.1:8080"
        ));
        assert!(!same_authority("null", "127.0.0.1:8080"));
        assert!(!same_authority("http://127.0.0.1:8080", ""));
        assert_eq!(host_only("[::1]:8080"), "[::1]");
        assert_eq!(host_only("localhost:1"), "localhost");
    }

    #[test]
    fn wrong_tokens_are_throttled_after_a_few() {
        let auth = Auth::new(Some("2468".into()));
        for _ in 0..FREE_FAILURES {
            assert_eq!(
                auth.attempt("0000", "2468", Access::Bearer),
                Verdict::Denied
            );
        }
        assert_eq!(
            auth.attempt("0000", "2468", Access::Bearer),
            Verdict::Denied
        );
        assert!(matches!(
            auth.attempt("2468", "2468", Access::Bearer),
            Verdict::Throttled(_)
        ));
    }

    #[test]
    fn sessions_are_random_and_expire_from_the_table() {
        let a = new_session_id().unwrap();
        let b = new_session_id().unwrap();
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
        let auth = Auth::new(Some("2468".into()));
        for _ in 0..MAX_SESSIONS + 5 {
            auth.login("2468").unwrap();
        }
        assert_eq!(auth.sessions.lock().unwrap().len(), MAX_SESSIONS);
    }
}
