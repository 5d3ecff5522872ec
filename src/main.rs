//! The `ocserv-uring` command: run the server, manage the password file,
//! check a configuration.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ocserv_uring::config::Config;
use ocserv_uring::passwd;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "ocserv-uring", version, about = "A thread-per-core OpenConnect VPN server")]
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
        #[arg(short = 'c', long = "file", default_value = "/etc/ocserv-uring/ocpasswd")]
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
    /// Control a running server through its control socket.
    #[command(after_help = CTL_HELP)]
    Ctl {
        /// The control socket; by default the one in --config, else
        /// /run/ocserv-uring/ctl.socket.
        #[arg(long)]
        socket: Option<PathBuf>,
        /// Print the server's answer as JSON (occtl -j field names).
        #[arg(long, short = 'j')]
        json: bool,
        /// The command, e.g. `show users`.
        #[arg(required = true, trailing_var_arg = true)]
        words: Vec<String>,
    },
}

const CTL_HELP: &str = "Commands:
  show status              server state, session counts and bytes
  show users               connected sessions, one per line
  show sessions            every session, also those waiting for a reconnect
  show user NAME           every session of a user, in full
  show id ID               one session, in full
  show ip bans             addresses refused now
  show ip ban points       every address with ban points
  disconnect user NAME     end a user's sessions (their cookies stop working)
  disconnect id ID         end one session
  unban ip ADDR            lift a ban
  stop now                 end every session and stop the server";

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Colours only for a person at a terminal, never into journald or files.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_max_level(cli.log_level)
        .with_target(false)
        .init();
    let result = match cli.command {
        None => run(cli.config),
        Some(Command::CheckConfig) => load(cli.config).map(|c| print!("{}", c.effective_toml())),
        Some(Command::Ctl { socket, json, words }) => ctl_command(cli.config, socket, json, &words),
        Some(Command::Passwd { file, groups, lock, unlock, delete, user }) => {
            passwd_command(&file, &user, groups, lock, unlock, delete)
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
    let path = path.ok_or("no configuration given: use --config FILE (config/dev.toml runs out of the box)")?;
    Config::load(&path).map_err(|e| e.to_string())
}

fn run(path: Option<PathBuf>) -> Result<(), String> {
    let config = load(path)?;
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
        Ok(n) => tracing::info!(open_files = n, "open-file limit (one per session, two with DTLS)"),
        Err(e) => tracing::warn!("could not raise the open-file limit: {e}"),
    }
}

fn ctl_command(config: Option<PathBuf>, socket: Option<PathBuf>, json: bool, words: &[String]) -> Result<(), String> {
    let socket = match (socket, config) {
        (Some(s), _) => s,
        (None, Some(c)) => Config::load(&c).map_err(|e| e.to_string())?.raw.control.socket,
        (None, None) => ocserv_uring::config::DEFAULT_CONTROL_SOCKET.into(),
    };
    if socket.as_os_str().is_empty() {
        return Err("the control socket is off in this configuration ([control] socket = \"\")".into());
    }
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let result = ocserv_uring::ctl::request(&socket, &words.join(" "))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&result).map_err(|e| e.to_string())?);
    } else {
        print!("{}", ocserv_uring::ctl::render(&words, &result));
    }
    Ok(())
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
        let groups = groups.map(|g| g.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect());
        passwd::Change::SetPassword { hash: passwd::hash_password(&password, random), groups }
    };
    let contents = match std::fs::read_to_string(file) {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(format!("{}: {e}", file.display())),
    };
    let updated = passwd::apply(&contents, user, &change).map_err(|e| format!("{}: {e}", file.display()))?;
    write_atomically(file, updated.as_bytes()).map_err(|e| format!("{}: {e}", file.display()))
}

/// Reads the password from stdin if it is not a terminal, else prompts twice.
fn read_password() -> Result<String, String> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        let mut line = String::new();
        stdin.lock().read_line(&mut line).map_err(|e| format!("reading the password: {e}"))?;
        let pw = line.trim_end_matches(['\n', '\r']).to_owned();
        return if pw.is_empty() { Err("empty password on stdin".into()) } else { Ok(pw) };
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

fn write_atomically(path: &PathBuf, data: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{}.tmp{}", path.file_name().and_then(|n| n.to_str()).unwrap_or("ocpasswd"), std::process::id()));
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}
