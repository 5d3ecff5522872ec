//! The `ocserv-uring` command: run the server, manage the password file,
//! check a configuration.

#![forbid(unsafe_code)]

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use ocserv_uring::config::Config;
use ocserv_uring::passwd;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "ocserv-uring",
    version,
    about = "A thread-per-core OpenConnect VPN server",
    // As ocserv's: `-d 1 ... -d 3` is level 3.
    args_override_self = true
)]
struct Cli {
    /// Configuration file (TOML).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Log level: error, warn, info, debug or trace.
    #[arg(long, default_value = "info", global = true)]
    log_level: tracing::Level,
    #[command(flatten)]
    ocserv: OcservArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

/// ocserv's own command line, so units and scripts written for it start
/// this server unchanged (`ocserv -f -c FILE -p PIDFILE -d N`, `-t`).
#[derive(clap::Args)]
struct OcservArgs {
    /// The configuration file (as `--config`).
    #[arg(short = 'c', value_name = "FILE")]
    config_file: Option<PathBuf>,
    /// Stay in the foreground; this server always does.
    #[arg(short = 'f', long)]
    foreground: bool,
    /// ocserv's debug level 0-9: 0-2 log at info, 3 at debug, 4 and up at
    /// trace.
    #[arg(short = 'd', long = "debug", value_name = "LEVEL")]
    debug: Option<u32>,
    /// Write the server's process id here at start.
    #[arg(short = 'p', long = "pid-file", value_name = "FILE")]
    pid_file: Option<PathBuf>,
    /// Check the configuration and exit (as `check-config`, quietly).
    #[arg(short = 't', long = "test-config")]
    test_config: bool,
    /// Accepted for ocserv's sake: logs always go to stderr (journald).
    #[arg(short = 'e', long = "log-stderr", hide = true)]
    log_stderr: bool,
    /// Accepted for ocserv's sake; logs go to stderr.
    #[arg(short = 's', long = "syslog", hide = true)]
    syslog: bool,
    /// Accepted for ocserv's sake; nothing to do.
    #[arg(long = "no-chdir", hide = true)]
    no_chdir: bool,
    /// Accepted for ocserv's sake; nothing to do.
    #[arg(short = 'x', long = "traceable", hide = true)]
    traceable: bool,
    /// Accepted for ocserv's sake; logs go to stderr.
    #[arg(long = "syslog-facility", hide = true, value_name = "NAME")]
    syslog_facility: Option<String>,
}

impl OcservArgs {
    /// `-d N` as a log level, if given.
    fn level(&self) -> Option<tracing::Level> {
        self.debug.map(|d| match d {
            0..=2 => tracing::Level::INFO,
            3 => tracing::Level::DEBUG,
            _ => tracing::Level::TRACE,
        })
    }
}

#[derive(Subcommand)]
enum Command {
    /// Add a user or change a password in an ocpasswd-format file.
    Passwd {
        /// The password file (ocpasswd format).
        #[arg(
            short = 'c',
            long = "file",
            default_value = "/etc/ocserv-uring/ocpasswd"
        )]
        file: PathBuf,
        /// Groups, comma-separated.
        #[arg(short = 'g', long)]
        groups: Option<String>,
        /// Lock the account.
        #[arg(short = 'l', long, conflicts_with_all = ["unlock", "delete"])]
        lock: bool,
        /// Unlock the account.
        #[arg(short = 'u', long, conflicts_with = "delete")]
        unlock: bool,
        /// Delete the account.
        #[arg(short = 'd', long)]
        delete: bool,
        user: String,
    },
    /// Validate a configuration and print the effective settings.
    CheckConfig {
        /// Print the configuration as this server's TOML instead (an
        /// ocserv.conf translated, each key with no equivalent as a comment).
        #[arg(long)]
        to_toml: bool,
    },
    /// Control a running server, and edit per-user and per-group files.
    Ctl(Box<ocserv_uring::ctl::CtlArgs>),
}

fn main() -> ExitCode {
    // Installed (or linked) as `occtl`: ocserv's control tool.
    let args: Vec<String> = std::env::args().collect();
    let name = args
        .first()
        .map(|a| a.rsplit('/').next().unwrap_or(a))
        .unwrap_or_default();
    if name == "occtl" {
        return ocserv_uring::occtl::main(&args[1..]);
    }
    if args.get(1).map(String::as_str) == Some("occtl") {
        return ocserv_uring::occtl::main(&args[2..]);
    }
    let mut cli = Cli::parse();
    if cli.config.is_none() {
        cli.config = cli.ocserv.config_file.take();
    }
    let level = cli.ocserv.level().unwrap_or(cli.log_level);
    let result = match cli.command {
        None if cli.ocserv.test_config => load(cli.config).map(|_| ()),
        None => load(cli.config).and_then(|mut c| {
            ocserv_uring::logging::init(level, c.raw.server.log_format == "json");
            if let Some(p) = cli.ocserv.pid_file.take() {
                c.raw.server.pid_file = p;
            }
            run(c)
        }),
        Some(command) => {
            ocserv_uring::logging::init(cli.log_level, false);
            match command {
                Command::CheckConfig { to_toml: false } => {
                    load(cli.config).map(|c| print!("{}", c.effective_toml()))
                }
                Command::CheckConfig { to_toml: true } => load(cli.config).and_then(|c| {
                    print!("{}", c.to_toml()?);
                    Ok(())
                }),
                Command::Ctl(args) => ocserv_uring::ctl::main(cli.config, *args),
                Command::Passwd {
                    file,
                    groups,
                    lock,
                    unlock,
                    delete,
                    user,
                } => passwd_command(&file, &user, groups, lock, unlock, delete),
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ocserv-uring: {e}");
            ExitCode::FAILURE
        }
    }
}

fn load(path: Option<PathBuf>) -> Result<Config, String> {
    let path = path
        .ok_or("no configuration given: use --config FILE (config/dev.toml runs out of the box)")?;
    Config::load(&path).map_err(|e| e.to_string())
}

fn run(config: Config) -> Result<(), String> {
    let passwd_file = config.raw.auth.passwd_file.clone();
    if !passwd_file.exists() {
        tracing::warn!(
            "password file {} does not exist yet; add a user with: ocserv-uring passwd -c {} USER",
            passwd_file.display(),
            passwd_file.display()
        );
    }
    for note in &config.ocserv_notes {
        tracing::info!(file = %config.file.display(), "ocserv configuration, {note}");
    }
    raise_nofile();
    let pid_file = config.raw.server.pid_file.clone();
    if !pid_file.as_os_str().is_empty() {
        // Before the server drops root: the file's directory is root's.
        std::fs::write(&pid_file, format!("{}\n", std::process::id()))
            .map_err(|e| format!("pid file {}: {e}", pid_file.display()))?;
    }
    let mut config = config;
    let passed = ocserv_uring::sys::activation::take()?;
    if let Some(p) = &passed {
        config.listen_on_passed(p);
        tracing::info!(
            tcp = ?config.listen, udp = ?config.udp_listen, tcp_port = config.raw.server.tcp_port, udp_port = config.raw.server.udp_port,
            "socket activation: serving the service manager's sockets ([server] listen and ports give way)"
        );
    }
    let ran = ocserv_uring::server::run(config, passed).map_err(|e| e.to_string());
    if !pid_file.as_os_str().is_empty() {
        // Fails after run_as_user in a root-owned directory: the service
        // manager (PIDFile=) or the next start takes care of it.
        if let Err(e) = std::fs::remove_file(&pid_file) {
            tracing::debug!("pid file {}: {e}", pid_file.display());
        }
    }
    ran
}

/// Each session holds a TCP and (with DTLS) a UDP descriptor.
fn raise_nofile() {
    match ocserv_uring::sys::raise_nofile() {
        Ok(n) => tracing::info!(
            open_files = n,
            "open-file limit (one per session, two with DTLS)"
        ),
        Err(e) => tracing::warn!("could not raise the open-file limit: {e}"),
    }
}

fn passwd_command(
    file: &PathBuf,
    user: &str,
    groups: Option<String>,
    lock: bool,
    unlock: bool,
    delete: bool,
) -> Result<(), String> {
    let change = if lock {
        passwd::Change::Lock
    } else if unlock {
        passwd::Change::Unlock
    } else if delete {
        passwd::Change::Delete
    } else {
        let password = read_password()?;
        let mut random = [0u8; 16];
        aws_lc_rs::rand::fill(&mut random).map_err(|_| "no randomness for the salt")?;
        let groups = groups.map(|g| {
            g.split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        });
        passwd::Change::SetPassword {
            hash: passwd::hash_password(&password, random),
            groups,
        }
    };
    // Held from the read to the rename, so two runs at once cannot lose
    // one's change. Beside the file, not on it: the rename replaces the
    // file, and a lock on the old one would not stop a third run.
    let _lock = lock_passwd(file)?;
    let contents = match std::fs::read_to_string(file) {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(format!("{}: {e}", file.display())),
    };
    let updated =
        passwd::apply(&contents, user, &change).map_err(|e| format!("{}: {e}", file.display()))?;
    ocserv_uring::cfgedit::write_atomically(file, updated.as_bytes(), 0o600)
        .map_err(|e| format!("{}: {e}", file.display()))
}

/// How long `passwd` waits for another run to finish.
const PASSWD_LOCK_WAIT: Duration = Duration::from_secs(5);

/// `.NAME.lock` beside the password file, locked exclusively.
fn lock_passwd(file: &Path) -> Result<std::fs::File, String> {
    let dir = file
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let name = file
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("ocpasswd");
    let path = dir.join(format!(".{name}.lock"));
    match ocserv_uring::cfgedit::lock_file(&path, PASSWD_LOCK_WAIT) {
        Ok(Some(f)) => Ok(f),
        Ok(None) => Err(format!(
            "{} is being changed by another process (lock {} still held after {} s); try again",
            file.display(),
            path.display(),
            PASSWD_LOCK_WAIT.as_secs()
        )),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Reads the password from stdin if it is not a terminal, else prompts twice.
fn read_password() -> Result<String, String> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .map_err(|e| format!("reading the password: {e}"))?;
        let pw = line.trim_end_matches(['\n', '\r']).to_owned();
        return if pw.is_empty() {
            Err("empty password on stdin".into())
        } else {
            Ok(pw)
        };
    }
    let first = prompt_hidden("Enter password: ")?;
    let second = prompt_hidden("Re-enter password: ")?;
    if first != second {
        return Err("passwords do not match".into());
    }
    if first.is_empty() {
        return Err("empty password".into());
    }
    Ok(first)
}

fn prompt_hidden(prompt: &str) -> Result<String, String> {
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let echo = ocserv_uring::sys::set_stdin_echo(false);
    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line);
    if echo {
        ocserv_uring::sys::set_stdin_echo(true);
    }
    eprintln!();
    read.map_err(|e| format!("reading the password: {e}"))?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}
