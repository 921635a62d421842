//! `--log` / `--log-format`: errors (and with `--debug`, debug lines) go to stderr as one line and
//! to the log file, in logrus-style text or JSON (`{"level","msg","time"}`), which is what
//! containerd and docker read back from `--log B/log.json` when a runtime call fails.

use crate::cli::LogFormat;
use std::io::Write;
use std::path::PathBuf;
use std::sync::OnceLock;

struct Logger {
    file: Option<PathBuf>,
    format: LogFormat,
    debug: bool,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

pub fn init(file: Option<PathBuf>, format: LogFormat, debug: bool) {
    let _ = LOGGER.set(Logger {
        file,
        format,
        debug,
    });
    // The backends' and the Linux layer's debug lines go where ours go.
    hako_linux::debug::set_sink(self::debug);
}

pub fn debug_enabled() -> bool {
    LOGGER.get().is_some_and(|l| l.debug)
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string()
}

/// One line, whatever the message holds.
fn one_line(msg: &str) -> String {
    msg.replace(['\n', '\r'], " ")
}

fn write_file(level: &str, msg: &str) {
    let Some(l) = LOGGER.get() else { return };
    let Some(path) = &l.file else { return };
    let line = match l.format {
        LogFormat::Json => {
            serde_json::json!({ "level": level, "msg": msg, "time": now_rfc3339() }).to_string()
        }
        LogFormat::Text => format!("time=\"{}\" level={} msg={:?}", now_rfc3339(), level, msg),
    };
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(f, "{line}");
    }
}

pub fn error(msg: &str) {
    let msg = one_line(msg);
    eprintln!("hako: {msg}");
    write_file("error", &msg);
}

pub fn warn(msg: &str) {
    let msg = one_line(msg);
    eprintln!("hako: warning: {msg}");
    write_file("warning", &msg);
}

pub fn debug(msg: &str) {
    if debug_enabled() {
        let msg = one_line(msg);
        eprintln!("hako: debug: {msg}");
        write_file("debug", &msg);
    }
}
