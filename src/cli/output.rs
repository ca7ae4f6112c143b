//! Everything imgferry prints: command results, warnings, events, progress and errors.
//!
//! Policy: data goes to stdout, everything else to stderr; progress bars only when stderr
//! is a terminal and neither `--quiet`, `--json` nor `--no-progress` is given; `--json`
//! turns every message into one JSON object per line on stdout; `NO_COLOR` is honoured.
//! `--quiet` leaves only errors and what the command exists to output ([`Output::result`]);
//! accounts of what was done ([`Output::summary`]), warnings and events are not printed.

use std::io::{IsTerminal, Write};
use std::sync::Arc;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{json, Value};

use super::{Failure, GlobalArgs};
use crate::report::{Event, Progress, Reporter};

/// How the user asked output to look.
#[derive(Debug, Clone, Copy)]
pub struct OutputOptions {
    pub quiet: bool,
    pub verbosity: u8,
    pub json: bool,
    pub progress_bars: bool,
    pub color: bool,
}

impl OutputOptions {
    /// Derives the options from the global flags and the environment.
    pub fn from_global(global: &GlobalArgs) -> Self {
        let stderr_tty = std::io::stderr().is_terminal();
        Self {
            quiet: global.quiet,
            verbosity: global.verbose,
            json: global.json,
            progress_bars: stderr_tty && !global.quiet && !global.json && !global.no_progress,
            color: stderr_tty && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        }
    }
}

/// The printer handed to every command.
pub struct Output {
    options: OutputOptions,
    bars: Arc<MultiProgress>,
}

impl Output {
    /// A printer with the given options.
    pub fn new(options: OutputOptions) -> Self {
        let bars = MultiProgress::with_draw_target(if options.progress_bars {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        });
        Self {
            options,
            bars: Arc::new(bars),
        }
    }

    /// Whether `--json` is on.
    pub fn is_json(&self) -> bool {
        self.options.json
    }

    /// Whether `--quiet` is on.
    pub fn is_quiet(&self) -> bool {
        self.options.quiet
    }

    /// Prints what the command exists to output (a listing, `info`, digests asked for):
    /// `value` (with `"type":"result"`) under `--json`, otherwise `human` on stdout, also
    /// under `--quiet`.
    pub fn result(&self, command: &str, value: Value, human: &str) {
        self.emit(command, value, human, false);
    }

    /// Prints the account of what a command did (what changed, what was verified): like
    /// [`Output::result`], but `--quiet` silences the text (the JSON line stays).
    pub fn summary(&self, command: &str, value: Value, human: &str) {
        self.emit(command, value, human, self.options.quiet);
    }

    fn emit(&self, command: &str, value: Value, human: &str, silent: bool) {
        if self.options.json {
            let mut object = json!({"type": "result", "command": command});
            if let (Some(target), Value::Object(fields)) = (object.as_object_mut(), value) {
                target.extend(fields);
            }
            self.json_line(&object);
        } else if !silent && !human.is_empty() {
            let mut stdout = std::io::stdout().lock();
            let _ = stdout.write_all(human.as_bytes());
            if !human.ends_with('\n') {
                let _ = stdout.write_all(b"\n");
            }
        }
    }

    /// Prints a failure as `error:` / `caused by:` / `hint:` lines on stderr (and as a
    /// `"type":"error"` object on stdout under `--json`).
    pub fn failure(&self, failure: &Failure) {
        let chain = failure.chain();
        if self.options.json {
            self.json_line(&json!({
                "type": "error",
                "message": chain[0],
                "causes": chain[1..],
                "hint": failure.hint,
                "exit_code": failure.code.code(),
            }));
        }
        let mut text = format!("{} {}\n", self.paint("error:", "31;1"), chain[0]);
        for cause in &chain[1..] {
            text.push_str(&format!("  {} {cause}\n", self.paint("caused by:", "33")));
        }
        if let Some(hint) = &failure.hint {
            text.push_str(&format!("  {} {hint}\n", self.paint("hint:", "36")));
        }
        self.stderr(&text);
    }

    /// A reporter for library calls made on behalf of this command.
    pub fn reporter(&self) -> CliReporter<'_> {
        CliReporter { output: self }
    }

    fn paint(&self, text: &str, sgr: &str) -> String {
        if self.options.color {
            format!("\x1b[{sgr}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    fn stderr(&self, text: &str) {
        // Routed through the progress bars so a live bar is not torn by the message.
        if self.options.progress_bars {
            let _ = self.bars.println(text.trim_end_matches('\n'));
        } else {
            let _ = std::io::stderr().lock().write_all(text.as_bytes());
        }
    }

    fn json_line(&self, value: &Value) {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{value}");
    }
}

/// The [`Reporter`] implementation behind every command.
pub struct CliReporter<'a> {
    output: &'a Output,
}

struct BarProgress(ProgressBar);

impl Progress for BarProgress {
    fn advance(&self, units: u64) {
        self.0.inc(units);
    }
    fn finish(&self) {
        self.0.finish_and_clear();
    }
}

impl Reporter for CliReporter<'_> {
    fn start_progress(&self, label: &str, total: Option<u64>) -> Box<dyn Progress> {
        let bar = match total {
            Some(total) => ProgressBar::new(total),
            None => ProgressBar::no_length(),
        };
        let template = if total.is_some() {
            "{msg:12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}"
        } else {
            "{msg:12} {spinner} {bytes} {bytes_per_sec}"
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(label.to_owned());
        let bar = self.output.bars.add(bar);
        Box::new(BarProgress(bar))
    }

    fn warn(&self, message: &str) {
        let output = self.output;
        if output.options.json {
            output.json_line(&json!({"type": "warning", "message": message}));
        } else if !output.options.quiet {
            output.stderr(&format!("{} {message}\n", output.paint("warning:", "33;1")));
        }
    }

    fn event(&self, event: Event) {
        let output = self.output;
        if output.options.json {
            let mut object = json!({"type": "event", "kind": event.kind, "message": event.message});
            if let Some(target) = object.as_object_mut() {
                target.extend(event.fields);
            }
            output.json_line(&object);
        } else if output.options.verbosity > 0 && !output.options.quiet {
            output.stderr(&format!("{}\n", event.message));
        }
    }
}
