//! The web console served by `kneescreen run`: upload and result pages, recent studies, the
//! panel mirror with its virtual button, status, and the JSON API behind them.
//!
//! It reaches the appliance only through the `Console` trait, so it is tested against a fake.
//! Requests meet a fixed route table; the only names taken from a URL are result stems, checked
//! against `[A-Za-z0-9_-]{1,80}` before they are handed on. The pages are one small vanilla-JS
//! app embedded in the binary (no CDN: the appliance works without internet).
//!
//! | route | what |
//! |---|---|
//! | `GET /`, `/recent`, `/panel`, `/status`, `/study/<stem>` | the pages |
//! | `POST /api/analyze` | multipart field `file` → the record (`analyze --json`); `Content-Location: /api/results/<stem>.json` |
//! | `GET /api/results?limit=N` | `[{"stem", "record"}]`, newest first |
//! | `GET /api/results/<stem>.json` / `.overlay.png` / `.input.png` | a study's files |
//! | `GET /api/patient/<stem>` | `{"name", "id", "birth_date"}` of a DICOM study when the appliance shows identity, else `null` |
//! | `GET /api/panel.png`, `POST /api/button` `{"event":"next"\|"previous"}` | panel mirror, virtual button |
//! | `GET /api/status` | the appliance's status plus `web` (upload limit, uploads running) |
//! | `GET /api/site-grades` | the clinician's KL grades: `{"grades": {stem: {knee: grade}}, "counts", "min_knees", "head", "error"}` (`error`: the grades file cannot be read) |
//! | `POST /api/site-grades` `{"stem", "knee", "grade": 0..4\|null}` | sets (or clears) one knee's grade |
//! | `POST /api/calibrate` `{"force": bool}` | fits a site head to those grades (the `calibrate --json` answer plus `report`); 422 with the reason when it cannot |
//! | `POST /api/calibrate/revert` | back to the shipped head |
//! | `GET`/`POST /login`, `POST /logout` | the PIN form (only with a token) |
//!
//! Errors are `{"error": "..."}`. With a token every request needs `Authorization: Bearer
//! <token>` or the login session cookie (401 otherwise); POSTs from browsers must be same-origin
//! (403 otherwise).

mod auth;
mod http;
pub mod multipart;

use crate::tls;
use std::borrow::Cow;
use std::hash::{Hash, Hasher};
use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::json;

use crate::hw::ButtonEvent;
use crate::pipeline::decode::dicom::identity::PatientIdentity;
use crate::record::Record;
use crate::store::results_dir::{self, ResultFile};
use auth::{Access, Auth, Verdict};
use http::{Request, Response};

/// What the console needs from the appliance.
pub trait Console: Send + Sync + 'static {
    /// Analyses an uploaded file through the same queue as files from USB; blocks until done.
    /// Returns the study's stem (its files in the results folder) and its record. `Err` is an
    /// internal failure (the model), not a bad image (that is a rejected record).
    fn analyze_upload(&self, bytes: Vec<u8>, client_name: &str)
        -> Result<(String, Record), String>;
    /// The newest `limit` studies in the results folder, newest first, with their stems.
    fn recent(&self, limit: usize) -> Vec<(String, Record)>;
    /// One file of a study; `stem` has already been validated.
    fn result_file(&self, stem: &str, kind: ResultFile) -> Option<Vec<u8>>;
    /// The patient a study belongs to, when the appliance is configured to show it and still
    /// holds it (in memory only); `stem` has already been validated.
    fn patient(&self, stem: &str) -> Option<PatientIdentity>;
    /// The panel's current frame as PNG (empty before the first frame).
    fn panel_png(&self) -> Vec<u8>;
    /// The virtual button.
    fn press(&self, event: ButtonEvent);
    /// Model id, queue, watched inputs, last error, free disk.
    fn status(&self) -> serde_json::Value;
    /// The clinician's KL grades entered so far, their counts per grade, and the head in use.
    fn site_grades(&self) -> serde_json::Value;
    /// Sets (`Some`) or clears the clinician's grade of knee `knee` (0-based) of a study;
    /// `stem` has already been validated. `Err` says why not, in words.
    fn set_site_grade(&self, stem: &str, knee: usize, grade: Option<u8>) -> Result<(), String>;
    /// Fits a site head to those grades; the report, or why it could not.
    fn calibrate(&self, force: bool) -> Result<serde_json::Value, String>;
    /// Goes back to the shipped head.
    fn revert_head(&self) -> Result<serde_json::Value, String>;
}

/// Console settings.
#[derive(Debug, Clone)]
pub struct WebConfig {
    pub listen: SocketAddr,
    /// Access token / PIN. Required when `listen` is not a loopback address.
    pub token: Option<String>,
    /// Largest file accepted by `POST /api/analyze`.
    pub max_upload_bytes: u64,
    /// Uploads analysed at once; more get 503.
    pub max_concurrent_uploads: usize,
    /// The certificate for TLS; required when `listen` is not a loopback address (patient data
    /// never crosses a network in clear), unused on loopback.
    pub tls: Option<tls::CertificateSource>,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            token: None,
            max_upload_bytes: 50 * 1024 * 1024,
            max_concurrent_uploads: 2,
            tls: None,
        }
    }
}

/// Why the console did not start.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// Listening beyond this machine without a token would let anyone on the network in.
    #[error(
        "the web console would listen on {0}, beyond this machine, without an access token: \
         set web.token in the config, or listen on 127.0.0.1"
    )]
    ExposedWithoutToken(SocketAddr),
    /// The token is blank.
    #[error("the web console's access token is empty: set web.token to a PIN or passphrase")]
    EmptyToken,
    /// Beyond this machine the console speaks only TLS.
    #[error("the web console would listen on {0}, beyond this machine, without TLS: give it a certificate")]
    ExposedWithoutTls(SocketAddr),
    /// The address is taken or not ours.
    #[error("the web console cannot listen on {0}: {1} (is another program using the port?)")]
    Bind(SocketAddr, std::io::Error),
}

/// The running console. Dropping it (or `stop`) closes the port and open connections.
pub struct WebServer {
    /// Where it listens (the real port when the configured one was 0).
    pub addr: SocketAddr,
    /// The certificate's SHA-256 fingerprint when it speaks TLS (`None`: plain HTTP, loopback).
    pub fingerprint: Option<String>,
    server: http::Server,
}

impl WebServer {
    /// The console's address as a URL (`https://` beyond loopback).
    pub fn url(&self) -> String {
        let scheme = if self.fingerprint.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }

    pub fn stop(self) {
        self.server.stop();
    }
}

/// Starts the console on its own threads.
pub fn serve(cfg: WebConfig, console: Arc<dyn Console>) -> anyhow::Result<WebServer> {
    let token = match cfg.token.as_deref().map(str::trim) {
        Some("") => return Err(WebError::EmptyToken.into()),
        Some(t) => Some(t.to_string()),
        None => None,
    };
    if token.is_none() && !cfg.listen.ip().is_loopback() {
        return Err(WebError::ExposedWithoutToken(cfg.listen).into());
    }
    let certificate = match (&cfg.tls, cfg.listen.ip().is_loopback()) {
        (_, true) => None,
        (Some(source), false) => Some(tls::load(source)?),
        (None, false) => return Err(WebError::ExposedWithoutTls(cfg.listen).into()),
    };
    let listener = TcpListener::bind(cfg.listen).map_err(|e| WebError::Bind(cfg.listen, e))?;
    let site = Arc::new(Site {
        auth: Auth::new(token),
        secure: certificate.is_some(),
        console,
        max_upload: cfg.max_upload_bytes,
        max_uploads: cfg.max_concurrent_uploads.max(1),
        uploads: AtomicUsize::new(0),
    });
    let server = http::start(
        listener,
        Box::new(move |req: &mut Request| site.handle(req)),
        error,
        certificate.as_ref().map(|c| c.config.clone()),
    )
    .map_err(|e| WebError::Bind(cfg.listen, e))?;
    Ok(WebServer {
        addr: server.addr,
        fingerprint: certificate.map(|c| c.fingerprint),
        server,
    })
}

const INDEX_HTML: &str = include_str!("assets/index.html");
const LOGIN_HTML: &str = include_str!("assets/login.html");
const APP_JS: &str = include_str!("assets/app.js");
/// Where app.js takes the results folder's file names, which `ResultFile` owns.
const RESULT_FILES_SLOT: &str = "/*RESULT_FILES*/{}";

/// app.js with the results folder's file names filled in, made once.
fn app_js() -> &'static str {
    static JS: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    JS.get_or_init(|| {
        let names: serde_json::Map<String, serde_json::Value> = results_dir::KINDS
            .into_iter()
            .map(|(key, suffix)| (key.to_string(), suffix.into()))
            .collect();
        APP_JS.replace(
            RESULT_FILES_SLOT,
            &serde_json::Value::Object(names).to_string(),
        )
    })
}
const STYLE_CSS: &str = include_str!("assets/style.css");
const ICON_SVG: &str = include_str!("assets/icon.svg");

/// Multipart framing around the file: boundaries, part headers, a field or two.
const MULTIPART_OVERHEAD: u64 = 64 * 1024;
const MAX_BUTTON_BODY: u64 = 1024; // also a grade or a calibration request
const MAX_LOGIN_BODY: u64 = 4096;
/// 50 MB in 5 minutes is ~170 kB/s, slower than any Wi-Fi a tablet will be on.
const UPLOAD_DEADLINE: std::time::Duration = std::time::Duration::from_secs(300);
const DEFAULT_RECENT: usize = 50;
const MAX_RECENT: usize = 500;

const CSP: &str = "default-src 'self'; object-src 'none'; base-uri 'none'; \
                   form-action 'self'; frame-ancestors 'none'";

struct Site {
    auth: Auth,
    /// Served over TLS: cookies are marked Secure.
    secure: bool,
    console: Arc<dyn Console>,
    max_upload: u64,
    max_uploads: usize,
    uploads: AtomicUsize,
}

/// The route table: every URL the console answers.
enum Route {
    /// The single-page app (upload, study, recent, panel, status).
    Page,
    Login,
    Logout,
    Asset(&'static str, &'static str),
    Analyze,
    Results,
    ResultFile(String, ResultFile),
    Patient(String),
    Panel,
    Button,
    Status,
    SiteGrades,
    Calibrate,
    RevertHead,
}

impl Route {
    /// The route for `path`, or the status to answer (400 bad stem, 404 unknown).
    fn find(path: &str) -> Result<Route, (u16, &'static str)> {
        Ok(match path {
            "/" | "/recent" | "/panel" | "/status" => Route::Page,
            "/login" => Route::Login,
            "/logout" => Route::Logout,
            "/assets/app.js" => Route::Asset(app_js(), "text/javascript; charset=utf-8"),
            "/assets/style.css" => Route::Asset(STYLE_CSS, "text/css; charset=utf-8"),
            "/assets/icon.svg" | "/favicon.ico" => Route::Asset(ICON_SVG, "image/svg+xml"),
            "/api/analyze" => Route::Analyze,
            "/api/results" => Route::Results,
            "/api/panel.png" => Route::Panel,
            "/api/button" => Route::Button,
            "/api/status" => Route::Status,
            "/api/site-grades" => Route::SiteGrades,
            "/api/calibrate" => Route::Calibrate,
            "/api/calibrate/revert" => Route::RevertHead,
            _ => {
                if let Some(stem) = path.strip_prefix("/study/") {
                    valid_stem(stem)?;
                    Route::Page
                } else if let Some(name) = path.strip_prefix("/api/results/") {
                    let (stem, kind) =
                        ResultFile::parse(name).ok_or((404, "no such result file"))?;
                    valid_stem(stem)?;
                    Route::ResultFile(stem.to_string(), kind)
                } else if let Some(stem) = path.strip_prefix("/api/patient/") {
                    valid_stem(stem)?;
                    Route::Patient(stem.to_string())
                } else {
                    return Err((404, "no such page"));
                }
            }
        })
    }

    fn methods(&self) -> &'static [&'static str] {
        match self {
            Route::Login => &["GET", "HEAD", "POST"],
            Route::SiteGrades => &["GET", "HEAD", "POST"],
            Route::Logout
            | Route::Analyze
            | Route::Button
            | Route::Calibrate
            | Route::RevertHead => &["POST"],
            _ => &["GET", "HEAD"],
        }
    }

    /// Pages answer a missing login with the login form; the rest with JSON.
    fn is_page(&self) -> bool {
        matches!(self, Route::Page | Route::Login)
    }
}

/// A result stem as the results folder writes them; nothing else reaches the filesystem.
fn valid_stem(stem: &str) -> Result<(), (u16, &'static str)> {
    let ok = (1..=80).contains(&stem.len())
        && stem
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err((400, "invalid study name"))
    }
}

/// A JSON error: `{"error": "..."}`.
fn error(status: u16, message: &str) -> Response {
    secure(
        Response::new(
            status,
            "application/json",
            json!({ "error": message }).to_string().into_bytes(),
        )
        .with_header("Cache-Control", "no-store"),
    )
}

fn json_response(value: &impl serde::Serialize) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => Response::new(200, "application/json", body),
        Err(e) => error(500, &format!("could not encode the answer: {e}")),
    }
}

/// The headers every answer carries.
fn secure(r: Response) -> Response {
    r.with_header("Content-Security-Policy", CSP)
        .with_header("X-Content-Type-Options", "nosniff")
        .with_header("X-Frame-Options", "DENY")
        .with_header("Referrer-Policy", "same-origin")
        .with_header("Cross-Origin-Resource-Policy", "same-origin")
        .with_header("Cross-Origin-Opener-Policy", "same-origin")
}

/// Static text with a validator, so a browser re-checks cheaply on every page load.
fn asset(req: &Request, body: &'static str, content_type: &str) -> Response {
    let mut h = std::hash::DefaultHasher::new();
    body.hash(&mut h);
    let etag = format!("\"{:016x}\"", h.finish());
    let fresh = req
        .header("if-none-match")
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let r = if fresh {
        Response::new(304, content_type, Cow::Borrowed(&[][..]))
    } else {
        Response::new(200, content_type, Cow::Borrowed(body.as_bytes()))
    };
    r.with_header("ETag", etag)
        .with_header("Cache-Control", "no-cache")
}

/// The sign-in form; `next` is where it returns to (a page path, never anything else).
fn login_page(status: u16, message: &str, next: &str) -> Response {
    let next = page_path(next).unwrap_or("/");
    let html = LOGIN_HTML
        .replace("{{message}}", message)
        .replace("{{next}}", next);
    Response::new(status, "text/html; charset=utf-8", html.into_bytes())
        .with_header("Cache-Control", "no-store")
}

/// `path` when it is one of the console's pages (so safe to redirect to and to put in HTML:
/// letters, digits, `/`, `_` and `-` only).
fn page_path(path: &str) -> Option<&str> {
    matches!(Route::find(path), Ok(Route::Page)).then_some(path)
}

/// Holds one of the upload slots until dropped.
struct UploadSlot<'a>(&'a AtomicUsize);

impl Drop for UploadSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Site {
    fn handle(&self, req: &mut Request) -> Response {
        let r = self.route(req);
        let is_api = req.path().starts_with("/api/");
        let r = if is_api && !r.headers.iter().any(|(k, _)| *k == "Cache-Control") {
            r.with_header("Cache-Control", "no-store")
        } else {
            r
        };
        secure(r)
    }

    fn route(&self, req: &mut Request) -> Response {
        if !self.auth.token_required() && !auth::host_is_loopback(req) {
            return error(
                403,
                "this console answers only to localhost/127.0.0.1 (set a token to serve a network)",
            );
        }
        let route = match Route::find(req.path()) {
            Ok(r) => r,
            Err((status, msg)) => return error(status, msg),
        };
        let method = if req.method == "HEAD" {
            "GET"
        } else {
            req.method.as_str()
        };
        if !route.methods().contains(&req.method.as_str()) {
            return error(405, "method not allowed")
                .with_header("Allow", route.methods().join(", "));
        }
        // The stylesheet is public so the login form has its looks; it holds nothing private.
        let public = matches!(route, Route::Login) || req.path() == "/assets/style.css";
        let access = match self.auth.check(req) {
            Verdict::Allowed(a) => Some(a),
            Verdict::Throttled(secs) if !public => {
                return error(429, "too many wrong tokens; wait and try again")
                    .with_header("Retry-After", secs.to_string())
            }
            _ if public => None,
            _ if route.is_page() => return login_page(401, "", req.path()),
            _ => {
                return error(401, "this console needs its access token")
                    .with_header("WWW-Authenticate", "Bearer realm=\"kneescreen\"")
            }
        };
        if method == "POST" {
            if let Some(why) = auth::cross_site_reason(req, access.unwrap_or(Access::Session)) {
                return error(403, why);
            }
        }
        match (route, method) {
            (Route::Page, _) => asset(req, INDEX_HTML, "text/html; charset=utf-8"),
            (Route::Asset(body, kind), _) => asset(req, body, kind),
            (Route::Login, "POST") => self.login(req),
            (Route::Login, _) => match access {
                Some(_) => redirect("/"),
                None => login_page(200, "", "/"),
            },
            (Route::Logout, _) => {
                self.auth.logout(req);
                redirect("/").with_header("Set-Cookie", auth::cleared_cookie(self.secure))
            }
            (Route::Analyze, _) => self.analyze(req),
            (Route::Results, _) => self.results(req),
            (Route::ResultFile(stem, kind), _) => self.result_file(&stem, kind),
            // `null` when identity is not shown (not an error: the study page always asks).
            (Route::Patient(stem), _) => json_response(&self.console.patient(&stem)),
            (Route::Panel, _) => {
                let png = self.console.panel_png();
                if png.is_empty() {
                    error(503, "the panel has not drawn its first frame yet")
                } else {
                    Response::new(200, "image/png", png)
                }
            }
            (Route::Button, _) => self.button(req),
            (Route::Status, _) => self.status(access),
            (Route::SiteGrades, "POST") => self.set_site_grade(req),
            (Route::SiteGrades, _) => json_response(&self.console.site_grades()),
            (Route::Calibrate, _) => self.calibrate(req),
            (Route::RevertHead, _) => match self.console.revert_head() {
                Ok(v) => json_response(&v),
                Err(e) => error(500, &e),
            },
        }
    }

    fn login(&self, req: &mut Request) -> Response {
        if !self.auth.token_required() {
            return redirect("/");
        }
        let Some(body) = read_small(req, MAX_LOGIN_BODY) else {
            return login_page(400, "The form could not be read; try again.", "/");
        };
        let pin = form_value(&body, "pin").unwrap_or_default();
        let next = form_value(&body, "next").unwrap_or_default();
        let next = page_path(&next).unwrap_or("/");
        match self.auth.login(&pin) {
            Ok(id) => {
                redirect(next).with_header("Set-Cookie", auth::session_cookie(&id, self.secure))
            }
            Err(Verdict::Throttled(secs)) => login_page(
                429,
                &format!("Too many wrong PINs: wait {secs} s and try again."),
                next,
            )
            .with_header("Retry-After", secs.to_string()),
            Err(_) => login_page(401, "Wrong PIN.", next),
        }
    }

    fn analyze(&self, req: &mut Request) -> Response {
        let boundary = match multipart::boundary(req.header("content-type").unwrap_or("")) {
            Ok(b) => b,
            Err(e) => return error(415, &e.to_string()),
        };
        let length = req.content_length();
        if length > self.max_upload.saturating_add(MULTIPART_OVERHEAD) {
            // Refused on the declared length: not one byte of the body is read.
            return error(
                413,
                &multipart::MultipartError::TooLarge(self.max_upload).to_string(),
            );
        }
        if length == 0 {
            return error(400, "the upload is empty");
        }
        let Some(_slot) = self.take_upload_slot() else {
            return error(
                503,
                "the appliance is busy with other uploads; try again shortly",
            )
            .with_header("Retry-After", "2");
        };
        let Ok(capacity) = usize::try_from(length) else {
            return error(413, "the upload is too large");
        };
        let body = match read_upload(req, capacity) {
            Ok(b) => b,
            Err(e) => {
                let slow = matches!(
                    e.kind(),
                    std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
                );
                let msg = format!("the upload did not arrive completely: {e}");
                return error(if slow { 408 } else { 400 }, &msg);
            }
        };
        let file = match multipart::take_file(body, &boundary, self.max_upload) {
            Ok(f) => f,
            Err(e @ multipart::MultipartError::TooLarge(_)) => return error(413, &e.to_string()),
            Err(e) => return error(400, &e.to_string()),
        };
        let name = multipart::sanitize_name(file.filename.as_deref());
        match self.console.analyze_upload(file.bytes, &name) {
            // Where the stored copy of this record lives (and so the study's name).
            Ok((stem, record)) => json_response(&record).with_header(
                "Content-Location",
                format!("/api/results/{}", ResultFile::Json.name(&stem)),
            ),
            Err(e) => error(500, &format!("the analysis failed: {e}")),
        }
    }

    fn take_upload_slot(&self) -> Option<UploadSlot<'_>> {
        self.uploads
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < self.max_uploads).then_some(n + 1)
            })
            .ok()
            .map(|_| UploadSlot(&self.uploads))
    }

    fn results(&self, req: &Request) -> Response {
        let mut limit = DEFAULT_RECENT;
        for pair in req.query().unwrap_or("").split('&') {
            if let Some(v) = pair.strip_prefix("limit=") {
                match v.parse::<usize>() {
                    Ok(n) if n >= 1 => limit = n.min(MAX_RECENT),
                    _ => return error(400, "limit must be a whole number from 1"),
                }
            }
        }
        let list: Vec<_> = self
            .console
            .recent(limit)
            .into_iter()
            .take(limit)
            .map(|(stem, record)| json!({ "stem": stem, "record": record }))
            .collect();
        json_response(&list)
    }

    fn result_file(&self, stem: &str, kind: ResultFile) -> Response {
        match self.console.result_file(stem, kind) {
            Some(bytes) => Response::new(200, kind.content_type(), bytes),
            None => error(404, "no such result"),
        }
    }

    fn button(&self, req: &mut Request) -> Response {
        #[derive(serde::Deserialize)]
        struct Press {
            event: ButtonEvent,
        }
        let Some(body) = read_small(req, MAX_BUTTON_BODY) else {
            return error(
                400,
                "send {\"event\": \"next\"} or {\"event\": \"previous\"}",
            );
        };
        match serde_json::from_slice::<Press>(&body) {
            Ok(p) => {
                self.console.press(p.event);
                json_response(&json!({ "ok": true }))
            }
            Err(_) => error(
                400,
                "send {\"event\": \"next\"} or {\"event\": \"previous\"}",
            ),
        }
    }

    fn set_site_grade(&self, req: &mut Request) -> Response {
        #[derive(serde::Deserialize)]
        struct Grade {
            stem: String,
            knee: usize,
            grade: Option<u8>,
        }
        const USAGE: &str = "send {\"stem\": \"<study>\", \"knee\": 0, \"grade\": 0..4 or null}";
        let parsed = read_small(req, MAX_BUTTON_BODY)
            .and_then(|body| serde_json::from_slice::<Grade>(&body).ok());
        let Some(g) = parsed else {
            return error(400, USAGE);
        };
        if let Err((status, msg)) = valid_stem(&g.stem) {
            return error(status, msg);
        }
        match self.console.set_site_grade(&g.stem, g.knee, g.grade) {
            Ok(()) => json_response(&self.console.site_grades()),
            Err(e) => error(400, &e),
        }
    }

    fn calibrate(&self, req: &mut Request) -> Response {
        #[derive(serde::Deserialize, Default)]
        struct Ask {
            #[serde(default)]
            force: bool,
        }
        let body = read_small(req, MAX_BUTTON_BODY).unwrap_or_default();
        let ask = match body.iter().all(u8::is_ascii_whitespace) {
            true => Ask::default(),
            false => match serde_json::from_slice::<Ask>(&body) {
                Ok(a) => a,
                Err(_) => return error(400, "send {\"force\": false} or {\"force\": true}"),
            },
        };
        match self.console.calibrate(ask.force) {
            Ok(v) => json_response(&v),
            Err(e) => error(422, &e),
        }
    }

    fn status(&self, access: Option<Access>) -> Response {
        let mut status = self.console.status();
        let web = json!({
            "max_upload_bytes": self.max_upload,
            "max_concurrent_uploads": self.max_uploads,
            "uploads_in_progress": self.uploads.load(Ordering::SeqCst),
            "login": access == Some(Access::Session),
        });
        match status.as_object_mut() {
            Some(obj) => {
                obj.insert("web".into(), web);
            }
            None => status = json!({ "appliance": status, "web": web }),
        }
        json_response(&status)
    }
}

fn redirect(to: &str) -> Response {
    Response::new(303, "text/plain; charset=utf-8", Cow::Borrowed(&b""[..]))
        .with_header("Location", to)
        .with_header("Cache-Control", "no-store")
}

/// The whole upload body, within `UPLOAD_DEADLINE`: a client that trickles bytes must not
/// keep an upload slot for ever (each read already times out after 30 s of silence).
fn read_upload(req: &mut Request, length: usize) -> std::io::Result<Vec<u8>> {
    let start = std::time::Instant::now();
    let mut body = Vec::with_capacity(length);
    let mut chunk = vec![0u8; 64 * 1024];
    while body.len() < length {
        if start.elapsed() > UPLOAD_DEADLINE {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("slower than {} minutes", UPLOAD_DEADLINE.as_secs() / 60),
            ));
        }
        let want = chunk.len().min(length - body.len());
        match req.body().read(&mut chunk[..want]) {
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the client stopped sending",
                ))
            }
            Ok(n) => body.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(body)
}

/// A short body (a form, a button press), or `None` when it is larger than `max`.
fn read_small(req: &mut Request, max: u64) -> Option<Vec<u8>> {
    if req.content_length() > max {
        return None;
    }
    let mut body = Vec::new();
    req.body().take(max).read_to_end(&mut body).ok()?;
    Some(body)
}

/// A value of an `application/x-www-form-urlencoded` body.
fn form_value(body: &[u8], key: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    text.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == key).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match s
                .get(i + 1..i + 3)
                .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
                .map(|h| u8::from_str_radix(h, 16))
            {
                Some(Ok(b)) => {
                    out.push(b);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stems() {
        assert!(valid_stem("knee_1-0a1b2c3d").is_ok());
        assert!(valid_stem(&"a".repeat(80)).is_ok());
        for bad in [
            "",
            "..",
            "a.b",
            "a/b",
            "a%2fb",
            "a\\b",
            "ä",
            &"a".repeat(81),
        ] {
            assert!(valid_stem(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn form_values() {
        assert_eq!(
            form_value(b"pin=12%2B3+4&x=1", "pin").as_deref(),
            Some("12+3 4")
        );
        assert_eq!(form_value(b"pin=%zz%", "pin").as_deref(), Some("%zz%"));
        assert_eq!(form_value(b"x=1", "pin"), None);
    }

    #[test]
    fn app_js_gets_every_result_file_name_from_the_results_folder_owner() {
        assert_eq!(APP_JS.matches(RESULT_FILES_SLOT).count(), 1);
        let js = app_js();
        assert!(!js.contains(RESULT_FILES_SLOT));
        for (key, suffix) in results_dir::KINDS {
            let entry = format!("\"{key}\":\"{suffix}\"");
            assert!(js.contains(&entry), "{key}");
        }
        // The script spells no name of its own.
        for name in [
            ".overlay.png",
            ".input.png",
            ".film.png",
            "'.json'",
            "\\.json",
        ] {
            assert!(!APP_JS.contains(name), "app.js spells {name}");
        }
    }
}
