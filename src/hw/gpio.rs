//! GPIO lines by name through the character device (gpiocdev): the panel's DC/reset/backlight
//! outputs (as embedded-hal `OutputPin`s) and the button's input line with edge events.

use std::time::Duration;

use gpiocdev::line::{Bias, EdgeDetection, Value};
use gpiocdev::{FoundLine, Request};

/// Name the kernel shows as the consumer of our lines (`gpioinfo`), so a technician can see who
/// holds them.
const CONSUMER: &str = "kneescreen";

/// Why a GPIO line could not be used.
#[derive(Debug, thiserror::Error)]
pub enum GpioError {
    /// No chip the user can open has a line of that name. The name is looked up rather than a
    /// `/dev/gpiochipN` number because the Pi 5 renumbered its chips (kernel 6.6.45+).
    #[error(
        "no GPIO line named {name:?} (config key {key}): check the spelling against `gpioinfo` \
         (e.g. \"GPIO17\") and that the service user is in the `gpio` group"
    )]
    NotFound { name: String, key: &'static str },
    /// The line exists but could not be claimed or configured.
    #[error(
        "cannot claim GPIO line {name:?} (config key {key}): {source}; another program or a \
         kernel overlay (fbtft, gpio-key) may hold it — see `gpioinfo`"
    )]
    Request {
        name: String,
        key: &'static str,
        source: gpiocdev::Error,
    },
    /// The kernel refused to change or read a claimed line.
    #[error("GPIO line {name:?} (config key {key}) stopped working: {source}")]
    Io {
        name: String,
        key: &'static str,
        source: gpiocdev::Error,
    },
    /// The process is out of threads or memory.
    #[error("cannot start the button's thread: {0}")]
    Thread(std::io::Error),
}

fn find(name: &str, key: &'static str) -> Result<FoundLine, GpioError> {
    gpiocdev::find_named_line(name).ok_or_else(|| GpioError::NotFound {
        name: name.to_string(),
        key,
    })
}

/// One output line, driven high/low; implements embedded-hal's `OutputPin` so mipidsi (and the
/// tests' fakes) see the same interface.
pub struct OutputLine {
    request: Request,
    name: String,
    key: &'static str,
}

impl OutputLine {
    /// Claims the line named `name` (from config key `key`) as an output, initially `high`.
    pub fn open(name: &str, key: &'static str, high: bool) -> Result<OutputLine, GpioError> {
        let line = find(name, key)?;
        let initial = if high { Value::Active } else { Value::Inactive };
        let request = Request::builder()
            .with_found_line(&line)
            .with_consumer(CONSUMER)
            .as_output(initial)
            .request()
            .map_err(|source| GpioError::Request {
                name: name.to_string(),
                key,
                source,
            })?;
        Ok(OutputLine {
            request,
            name: name.to_string(),
            key,
        })
    }

    fn set(&mut self, value: Value) -> Result<(), GpioError> {
        self.request
            .set_lone_value(value)
            .map_err(|source| GpioError::Io {
                name: self.name.clone(),
                key: self.key,
                source,
            })
    }
}

impl embedded_hal::digital::Error for GpioError {
    fn kind(&self) -> embedded_hal::digital::ErrorKind {
        embedded_hal::digital::ErrorKind::Other
    }
}

impl embedded_hal::digital::ErrorType for OutputLine {
    type Error = GpioError;
}

impl embedded_hal::digital::OutputPin for OutputLine {
    fn set_low(&mut self) -> Result<(), GpioError> {
        self.set(Value::Inactive)
    }

    fn set_high(&mut self) -> Result<(), GpioError> {
        self.set(Value::Active)
    }
}

/// Claims the button line `name` as an input with pull-up, active low (pressed = pulled to
/// GND), edge events on both edges and the kernel's debounce.
pub fn open_button(name: &str, debounce: Duration) -> Result<Request, GpioError> {
    let key = "button.line";
    let line = find(name, key)?;
    Request::builder()
        .with_found_line(&line)
        .with_consumer(CONSUMER)
        .as_input()
        .as_active_low()
        .with_bias(Bias::PullUp)
        .with_edge_detection(EdgeDetection::BothEdges)
        .with_debounce_period(debounce)
        .request()
        .map_err(|source| GpioError::Request {
            name: name.to_string(),
            key,
            source,
        })
}
