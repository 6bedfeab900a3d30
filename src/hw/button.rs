//! The push-button: classifying press/release edges into short and long presses (pure, driven by
//! timestamps), the GPIO driver thread that feeds it, and the keyboard stand-in for laptops.

use std::io::{BufRead, IsTerminal};
use std::sync::mpsc::Sender;
use std::thread::JoinHandle;
use std::time::Duration;

use gpiocdev::line::EdgeKind;

use super::gpio::{self, GpioError};

/// What the push-button (or its keyboard and web-console stand-ins) asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ButtonEvent {
    /// Short press: the next view.
    Next,
    /// Long press: the previous study.
    Previous,
}

/// A change of the button's state, as the line reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edge {
    Press,
    Release,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Released,
    /// Held since `since`; `long_sent` once the long press has been reported.
    Pressed {
        since: u64,
        long_sent: bool,
    },
    /// Let go at `at`, but not yet for `debounce`: a press within that time is contact bounce
    /// and continues the same press.
    Releasing {
        since: u64,
        long_sent: bool,
        at: u64,
    },
}

/// Turns edges with monotonic timestamps (nanoseconds) into button events:
/// - a press held shorter than `debounce` is a glitch and ignored;
/// - a release followed by a press within `debounce` is bounce: the press goes on;
/// - held for `long_press`: `Previous`, reported as soon as the time passes (`tick`), while the
///   button is still down — the user sees the reaction without letting go;
/// - let go before that: `Next`, once the release has been stable for `debounce`;
/// - missed edges (two presses in a row) end the first press where the second begins; a release
///   without a press is ignored (a phantom event is worse than a lost one).
///
/// Call `edge` for each edge and `tick` at `deadline()` (or any time).
#[derive(Debug, Clone)]
pub struct PressClassifier {
    long_press: u64,
    debounce: u64,
    state: State,
}

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl PressClassifier {
    pub fn new(long_press: Duration, debounce: Duration) -> PressClassifier {
        PressClassifier {
            long_press: ns(long_press),
            debounce: ns(debounce),
            state: State::Released,
        }
    }

    /// Feeds one edge seen at `t` (ns); returns the event it completes, if any.
    pub fn edge(&mut self, edge: Edge, t: u64) -> Option<ButtonEvent> {
        let mut event = self.tick(t);
        self.state = match (self.state, edge) {
            (State::Released, Edge::Press) => State::Pressed {
                since: t,
                long_sent: false,
            },
            (
                State::Releasing {
                    since, long_sent, ..
                },
                Edge::Press,
            ) => {
                // `tick` above has closed releases older than `debounce`: this one is bounce.
                State::Pressed { since, long_sent }
            }
            (State::Pressed { since, long_sent }, Edge::Press) => {
                // The release edge was lost: the first press ended at the latest here.
                event = event.or(self.finish(since, t, long_sent));
                State::Pressed {
                    since: t,
                    long_sent: false,
                }
            }
            (State::Pressed { since, long_sent }, Edge::Release) => {
                if t.saturating_sub(since) < self.debounce {
                    State::Released
                } else {
                    State::Releasing {
                        since,
                        long_sent,
                        at: t,
                    }
                }
            }
            (state, Edge::Release) => state,
        };
        event
    }

    /// Advances the clock to `now` (ns): reports a long press whose time has come, or a release
    /// that has become stable.
    pub fn tick(&mut self, now: u64) -> Option<ButtonEvent> {
        match self.state {
            State::Pressed {
                since,
                long_sent: false,
            } if now.saturating_sub(since) >= self.long_press => {
                self.state = State::Pressed {
                    since,
                    long_sent: true,
                };
                Some(ButtonEvent::Previous)
            }
            State::Releasing {
                since,
                long_sent,
                at,
            } if now.saturating_sub(at) >= self.debounce => {
                self.state = State::Released;
                self.finish(since, at, long_sent)
            }
            _ => None,
        }
    }

    /// When `tick` next has something to decide, if anything.
    pub fn deadline(&self) -> Option<u64> {
        match self.state {
            State::Pressed {
                since,
                long_sent: false,
            } => Some(since.saturating_add(self.long_press)),
            State::Releasing { at, .. } => Some(at.saturating_add(self.debounce)),
            _ => None,
        }
    }

    /// Whether the button counts as held down right now.
    pub fn is_pressed(&self) -> bool {
        !matches!(self.state, State::Released)
    }

    /// The event for a press held from `since` to `end`. A long press was already reported by
    /// `tick`, which every `edge` runs first, so anything else is a short one.
    fn finish(&self, since: u64, end: u64, long_sent: bool) -> Option<ButtonEvent> {
        let held = end.saturating_sub(since);
        (!long_sent && held >= self.debounce).then_some(ButtonEvent::Next)
    }
}

/// CLOCK_MONOTONIC in ns: the clock the GPIO character device stamps edge events with.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write into; CLOCK_MONOTONIC exists on every Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// Longest wait for an edge when no press is in progress; the thread sleeps in the kernel
/// meanwhile, so an idle button costs no CPU.
const IDLE_WAIT: Duration = Duration::from_secs(60);

/// Claims the GPIO line named `line` (pull-up, button to GND, kernel debounce of `debounce`) and
/// starts a thread that sends each press on `tx`. The thread ends with `Ok` when the receiver
/// is dropped, or with the error if the line stops working.
pub fn spawn_gpio_button<E>(
    line: &str,
    long_press: Duration,
    debounce: Duration,
    tx: Sender<E>,
) -> Result<JoinHandle<Result<(), GpioError>>, GpioError>
where
    E: From<ButtonEvent> + Send + 'static,
{
    let request = gpio::open_button(line, debounce)?;
    let name = line.to_string();
    let io = move |source| GpioError::Io {
        name: name.clone(),
        key: "button.line",
        source,
    };
    let handle = std::thread::Builder::new()
        .name("button".into())
        .spawn(move || {
            let mut classifier = PressClassifier::new(long_press, debounce);
            loop {
                let wait = classifier
                    .deadline()
                    .map(|d| Duration::from_nanos(d.saturating_sub(monotonic_ns())))
                    .unwrap_or(IDLE_WAIT);
                let mut events = Vec::new();
                if request.wait_edge_event(wait).map_err(&io)? {
                    let edge = request.read_edge_event().map_err(&io)?;
                    // Requested active-low: "rising" is the button going down.
                    let edge_kind = match edge.kind {
                        EdgeKind::Rising => Edge::Press,
                        EdgeKind::Falling => Edge::Release,
                    };
                    events.extend(classifier.edge(edge_kind, edge.timestamp_ns));
                }
                events.extend(classifier.tick(monotonic_ns()));
                for event in events {
                    if tx.send(E::from(event)).is_err() {
                        return Ok(());
                    }
                }
            }
        })
        .map_err(GpioError::Thread)?;
    Ok(handle)
}

/// What a line typed on the keyboard means: Enter (alone or after a space) or "n" = next view,
/// "p" = previous study.
pub fn key_event(line: &str) -> Option<ButtonEvent> {
    match line.trim().to_ascii_lowercase().as_str() {
        "" | "n" | "next" => Some(ButtonEvent::Next),
        "p" | "prev" | "previous" => Some(ButtonEvent::Previous),
        _ => None,
    }
}

/// On a laptop: when stdin is a terminal, starts a thread turning typed lines into button
/// events (see `key_event`). Returns `None` (and reads nothing) under systemd or in scripts.
pub fn spawn_keyboard<E>(tx: Sender<E>) -> Option<JoinHandle<()>>
where
    E: From<ButtonEvent> + Send + 'static,
{
    if !std::io::stdin().is_terminal() {
        return None;
    }
    std::thread::Builder::new()
        .name("keyboard".into())
        .spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { return };
                if let Some(event) = key_event(&line) {
                    if tx.send(E::from(event)).is_err() {
                        return;
                    }
                }
            }
        })
        .ok()
}
