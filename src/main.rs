//! The `ocserv-uring` command: run the server, manage the password file,
//! check a configuration.

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
    about = "A thread-per-core OpenConnect VPN server"
)]
struct Cli {
    /// Configuration file (TOML).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Log level: error, warn, info, debug or trace.
    #[arg(long, default_value = "info", global = true)]
    log_level: tracing::Level,
    #[command(subcommand)]
    command: Option<Command>,
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
    CheckConfig,
    /// Control a running server, and edit per-user and per-group files.
    Ctl(Box<ocserv_uring::ctl::CtlArgs>),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => load(cli.config).and_then(|c| {
            ocserv_uring::logging::init(cli.log_level, c.raw.server.log_format == "json");
            run(c)
        }),
        Some(command) => {
            ocserv_uring::logging::init(cli.log_level, false);
            match command {
                Command::CheckConfig => load(cli.config).map(|c| print!("{}", c.effective_toml())),
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
    raise_nofile();
    ocserv_uring::shard::run(config).map_err(|e| e.to_string())
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
