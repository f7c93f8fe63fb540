//! `kami`: the command line (DESIGN 4.1). A thin layer over kami-server and kami-store.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use kami_core::{cards::KeyStream, SecretToken, Slug};
use kami_server::services::passwords;
use kami_server::{config, demo, time::now_ms, Application, BuildOptions, Config};
use kami_store::{KeyFiles, KeyLock, RotateStep, Store};

mod reconcile;
mod simulators;

#[derive(Parser)]
#[command(
    name = "kami",
    version,
    about = "kami: a self-hosted automatic digital-goods shop"
)]
struct Cli {
    /// Configuration file (TOML). Without one kami runs on defaults; KAMI__SECTION__KEY
    /// environment variables override any key.
    #[arg(long, global = true, env = "KAMI_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the shop.
    Serve {
        /// Seed a demo catalogue and wire the sandbox channel to the built-in simulator.
        #[arg(long)]
        demo: bool,
    },
    /// Create or upgrade the database schema, then exit.
    Migrate,
    /// Administration.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Card-key stock.
    Cards {
        #[command(subcommand)]
        command: CardsCommand,
    },
    /// The master key that encrypts card keys and other stored secrets.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Write a consistent copy of the live SQLite database to FILE (mode 0600).
    ///
    /// The copy is taken online (`VACUUM INTO`: the shop keeps running) and its card keys stay
    /// encrypted: back up the master key (`[security] master_key_file`) separately, and keep
    /// it away from the database copies; without it the copy's card keys cannot be read.
    /// FILE must not exist. On PostgreSQL nothing is written: kami prints how to use
    /// `pg_dump` and exits with status 2.
    Backup { file: PathBuf },
    /// Reconcile a day's payments against each channel's bill: recover what the bill proves
    /// paid, report differences. Prints a summary, then the JSON report as the last line;
    /// exits non-zero when a batch failed.
    Reconcile {
        /// One channel (default: every enabled channel, and others with payments that day).
        #[arg(long)]
        channel: Option<String>,
        /// The bill day, YYYY-MM-DD in Beijing time (default: yesterday).
        #[arg(long)]
        date: Option<String>,
    },
    /// Run the gateway simulators standalone (Alipay, WeChat Pay v3, Epay, sandbox).
    Sim {
        #[arg(long, default_value = "127.0.0.1:8090")]
        listen: std::net::SocketAddr,
        /// HMAC secret of the sandbox protocol (random when absent; printed).
        #[arg(long, env = "KAMI_SIM_SANDBOX_SECRET")]
        sandbox_secret: Option<String>,
        /// Write a kami configuration whose channels talk to these simulators (keys are
        /// generated at start and written next to it, in `<FILE>.keys/`).
        #[arg(long, value_name = "FILE")]
        write_config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Re-encrypt every stored secret under a new master key.
    ///
    /// Refused while any other kami process uses the database: every `kami serve` (and every
    /// other kami command, while it runs) holds the database's key lock shared, and rotation
    /// needs it exclusive — stop the shop first, on every host. The new key is written to
    /// `master.key.next` (mode 0600) and registered before anything is encrypted under it;
    /// secrets are re-encrypted in small transactions; once a census finds every secret under
    /// the new key, the current key is kept as `master.key.old.<key id>` (no key file is ever
    /// overwritten) and `master.key.next` replaces `master.key`; the old key is unregistered
    /// last. Safe to interrupt at any point (every secret stays readable with the files
    /// present); run it again to finish. Back up the new `master.key` afterwards; the
    /// `master.key.old.*` files are needed only to read backups taken before the rotation.
    Rotate,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Admin API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Admin console logins.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create an admin API token; printed as the last line of stdout.
    Create { name: String },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create an admin login; its generated password is the last line of stdout.
    Create { name: String },
    /// Turn off an admin's second factor (lost phone); they sign in with the password alone.
    #[command(name = "reset-2fa")]
    Reset2fa { name: String },
    /// Disable an admin login: its sessions end at once and it cannot sign in (never the last
    /// enabled one).
    Disable { name: String },
    /// Enable a disabled admin login again.
    Enable { name: String },
    /// Remove an admin login and its sessions (never the last enabled one); its audit log
    /// entries stay.
    Remove { name: String },
}

#[derive(Subcommand)]
enum CardsCommand {
    /// Import card keys, one per line, de-duplicated against stored keys.
    Import {
        /// The product's slug.
        #[arg(long)]
        product: String,
        /// Reusable keys that are never used up.
        #[arg(long = "loop")]
        is_loop: bool,
        /// File with one key per line (`-` for standard input).
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    // Whatever kami creates (data directory, database and WAL files, keys, backups) is the
    // owner's alone.
    // SAFETY: umask only sets the process's file mode mask; it cannot fail.
    unsafe {
        libc::umask(0o077);
    }
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load_config(path: Option<&PathBuf>) -> anyhow::Result<Config> {
    let loaded = config::load(path.map(PathBuf::as_path), std::env::vars())?;
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    Ok(loaded.config)
}

fn key_files(config: &Config) -> KeyFiles {
    KeyFiles::new(config.security.master_key_path(&config.server))
}

/// The database's key lock, shared: held by every command while it uses the database (and
/// by `kami serve` for its life), so `kami keys rotate` never runs beside one. Taken before
/// the key files are read.
async fn shared_lock(config: &Config, who: &str) -> anyhow::Result<KeyLock> {
    KeyLock::shared(&config.database.url, who)
        .await
        .with_context(|| {
            format!(
                "taking the key lock of the {} database",
                scheme(&config.database.url)
            )
        })
}

async fn connect(config: &Config) -> anyhow::Result<Store> {
    Store::connect(
        &config.database.url,
        config.database.max_connections,
        &key_files(config),
    )
    .await
    .with_context(|| format!("opening the {} database", scheme(&config.database.url)))
}

/// Open the store for the command `who`, holding the shared key lock (keep it while the store
/// is used).
async fn open_store(config: &Config, who: &str) -> anyhow::Result<(Store, KeyLock)> {
    let lock = shared_lock(config, who).await?;
    Ok((connect(config).await?, lock))
}

/// Fail points for tests: `KAMI_TEST_ROTATE_FAIL_AT=<step>` (a [`RotateStep`] name) makes
/// `kami keys rotate` exit at once with status 86 when it reaches that step — no cleanup, as
/// if killed there. Only tests set it; a rotation is built to survive exactly that.
fn rotate_fail_point() -> anyhow::Result<impl Fn(RotateStep) + Sync> {
    let at = match std::env::var("KAMI_TEST_ROTATE_FAIL_AT") {
        Ok(name) => Some(
            RotateStep::ALL
                .into_iter()
                .find(|s| s.name() == name)
                .ok_or_else(|| {
                    let names: Vec<_> = RotateStep::ALL.iter().map(|s| s.name()).collect();
                    anyhow::anyhow!(
                        "KAMI_TEST_ROTATE_FAIL_AT={name:?} names no rotation step (one of: {})",
                        names.join(", ")
                    )
                })?,
        ),
        Err(_) => None,
    };
    Ok(move |step: RotateStep| {
        if Some(step) == at {
            eprintln!("KAMI_TEST_ROTATE_FAIL_AT: exiting at step {}", step.name());
            // SAFETY: _exit ends the process at once; nothing after it runs.
            unsafe { libc::_exit(86) }
        }
    })
}

/// The URL scheme only: the rest may hold a password.
fn scheme(url: &str) -> &str {
    url.split(':').next().unwrap_or("")
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve { demo } => serve(cli.config.as_ref(), demo).await,
        Command::Migrate => {
            let config = load_config(cli.config.as_ref())?;
            let _opened = open_store(&config, "kami migrate").await?;
            println!(
                "database schema is up to date ({})",
                scheme(&config.database.url)
            );
            Ok(())
        }
        Command::Admin {
            command:
                AdminCommand::Token {
                    command: TokenCommand::Create { name },
                },
        } => {
            let config = load_config(cli.config.as_ref())?;
            let (store, _lock) = open_store(&config, "kami admin token create").await?;
            let name = check_name(&name)?;
            let token = SecretToken::generate();
            store
                .create_admin_token(name, &token.hash(), now_ms())
                .await?;
            eprintln!("created admin API token {name:?}; it is shown once, store it now:");
            println!("{}", token.expose());
            Ok(())
        }
        Command::Admin {
            command:
                AdminCommand::User {
                    command: UserCommand::Create { name },
                },
        } => {
            let config = load_config(cli.config.as_ref())?;
            let (store, _lock) = open_store(&config, "kami admin user create").await?;
            let name = check_name(&name)?;
            let password = SecretToken::generate().expose()[..20].to_owned();
            let pw = password.clone();
            let hash = tokio::task::spawn_blocking(move || passwords::hash_blocking(&pw))
                .await?
                .map_err(anyhow::Error::msg)?;
            if !store.create_admin_user(name, &hash, now_ms()).await? {
                bail!("an admin user named {name:?} already exists");
            }
            eprintln!("created admin user {name:?}; its password is shown once:");
            println!("{password}");
            Ok(())
        }
        Command::Admin {
            command:
                AdminCommand::User {
                    command: UserCommand::Reset2fa { name },
                },
        } => {
            let config = load_config(cli.config.as_ref())?;
            let (store, _lock) = open_store(&config, "kami admin user reset-2fa").await?;
            kami_server::services::two_factor::reset_from_cli(&store, &name, now_ms())
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            eprintln!("the second factor of admin user {name:?} is off; they sign in with their password alone");
            Ok(())
        }
        Command::Admin {
            command:
                AdminCommand::User {
                    command:
                        command @ (UserCommand::Disable { .. }
                        | UserCommand::Enable { .. }
                        | UserCommand::Remove { .. }),
                },
        } => {
            let config = load_config(cli.config.as_ref())?;
            let (store, _lock) = open_store(&config, "kami admin user").await?;
            change_user(&store, command).await
        }
        Command::Cards {
            command:
                CardsCommand::Import {
                    product,
                    is_loop,
                    file,
                },
        } => {
            let config = load_config(cli.config.as_ref())?;
            import_cards(&config, &product, is_loop, &file).await
        }
        Command::Keys {
            command: KeysCommand::Rotate,
        } => {
            let config = load_config(cli.config.as_ref())?;
            let fail_point = rotate_fail_point()?;
            // Exclusive before the key files are read; refused while any other kami process
            // uses the database.
            let lock = KeyLock::exclusive(&config.database.url, "kami keys rotate").await?;
            let store = connect(&config).await?;
            let files = key_files(&config);
            let r = store
                .rotate_keys(&files, &lock, &fail_point)
                .await
                .context("rotating the master key")?;
            if r.finished_interrupted {
                println!(
                    "finished the interrupted rotation: re-encrypted {} more secrets; key {} → {} \
                     ({}); the old key is kept as {}. Back up the new key file.",
                    r.resealed,
                    r.from,
                    r.to,
                    files.path().display(),
                    files.old_key_path(r.from).display()
                );
            } else {
                println!(
                    "re-encrypted {} secrets; key {} → {} ({}); the old key is kept as {}. Back \
                     up the new key file.",
                    r.resealed,
                    r.from,
                    r.to,
                    files.path().display(),
                    files.old_key_path(r.from).display()
                );
            }
            Ok(())
        }
        Command::Backup { file } => {
            let config = load_config(cli.config.as_ref())?;
            let (store, _lock) = open_store(&config, "kami backup").await?;
            if store.backend_name() == "postgres" {
                eprintln!(
                    "kami backup copies SQLite databases only. For PostgreSQL use its own tool, e.g.\n  \
                     pg_dump --format=custom --file=kami.dump \"$DATABASE_URL\"\n\
                     (card keys stay encrypted in the dump). Back up the master key ({}) separately.",
                    key_files(&config).path().display()
                );
                std::process::exit(2);
            }
            store
                .backup_to(&file)
                .await
                .with_context(|| format!("backing up to {}", file.display()))?;
            println!(
                "wrote {} (card keys stay encrypted); back up the master key {} separately",
                file.display(),
                key_files(&config).path().display()
            );
            Ok(())
        }
        Command::Reconcile { channel, date } => {
            let config = load_config(cli.config.as_ref())?;
            let _lock = shared_lock(&config, "kami reconcile").await?;
            reconcile::run(config, channel, date).await
        }
        Command::Sim {
            listen,
            sandbox_secret,
            write_config,
        } => {
            let secret =
                sandbox_secret.unwrap_or_else(|| SecretToken::generate().expose().to_owned());
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("listening on {listen}"))?;
            let base = format!("http://{}", listener.local_addr()?);
            let gateways = kami_sim::gateways::Gateways::generate(&base, Default::default())?;
            if let Some(file) = write_config {
                let keys_dir = PathBuf::from(format!("{}.keys", file.display()));
                let mut toml = gateways.write_channel_config(&keys_dir)?;
                toml.push_str(&format!(
                    "\n[[channels]]\nid = \"sandbox-sim\"\nkind = \"sandbox\"\nmethods = [\"sandbox\"]\ngateway = \"{base}\"\nsecret = \"{secret}\"\nallow_sandbox = true\n"
                ));
                std::fs::write(&file, toml)
                    .with_context(|| format!("writing {}", file.display()))?;
                eprintln!(
                    "wrote {} (keys in {}); use it as kami's --config",
                    file.display(),
                    keys_dir.display()
                );
            } else {
                eprintln!("sandbox secret (the sandbox channel's `secret`): {secret}");
            }
            let router = gateways
                .router
                .clone()
                .merge(kami_sim::standalone_router(secret.into_bytes()));
            println!("simulators listening on {base}");
            axum::serve(listener, router)
                .await
                .context("simulator server")
        }
    }
}

fn check_name(name: &str) -> anyhow::Result<&str> {
    let n = name.trim();
    if n.is_empty() || n.len() > 64 || n.chars().any(char::is_control) {
        bail!("name must be 1 to 64 printable characters");
    }
    Ok(n)
}

async fn serve(config_path: Option<&PathBuf>, demo: bool) -> anyhow::Result<()> {
    let mut config = load_config(config_path)?;
    if demo {
        demo::add_sandbox_channel(&mut config);
        demo::add_rates(&mut config);
    }
    // Held for the server's whole life: `kami keys rotate` refuses while it is.
    let _lock = shared_lock(&config, "kami serve").await?;
    let app = Application::build_with(
        config,
        BuildOptions {
            demo,
            extension: Some(simulators::extension(demo)),
            clock: None,
        },
    )
    .await?;
    let state = app.state();
    println!(
        "kami {} listening on {} ({} database)",
        env!("CARGO_PKG_VERSION"),
        state.public_url,
        state.store.backend_name()
    );
    // Machine-readable form for scripts and tests.
    println!("listening on http://{}", app.addr());
    if demo {
        let token = demo::seed(&state.store)
            .await
            .context("seeding the demo catalogue")?;
        println!("{}", demo::walkthrough(&state.public_url, &token));
        let (user, password) = demo_admin(&state.store).await?;
        eprintln!(
            "demo console: {}/admin/login  user: {user}  password: {password}",
            state.public_url
        );
    }
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        let _ = tx.send(true);
    });
    app.run(rx).await.context("server")?;
    Ok(())
}

/// The demo's console login: user `demo` with a password generated at each start (never a
/// default one), printed on stderr.
async fn demo_admin(store: &Store) -> anyhow::Result<(&'static str, String)> {
    const NAME: &str = "demo";
    let password = SecretToken::generate().expose()[..20].to_owned();
    let pw = password.clone();
    let hash = tokio::task::spawn_blocking(move || passwords::hash_blocking(&pw))
        .await?
        .map_err(anyhow::Error::msg)?;
    if !store.create_admin_user(NAME, &hash, now_ms()).await?
        && !store.set_admin_password(NAME, &hash).await?
    {
        bail!("could not create the demo console login");
    }
    Ok((NAME, password))
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Keys per `Store::import_cards` call: the file is read as a stream and imported a batch
/// at a time, so memory holds one batch, not the file.
const IMPORT_BATCH: usize = 1000;

async fn import_cards(
    config: &Config,
    product: &str,
    is_loop: bool,
    file: &PathBuf,
) -> anyhow::Result<()> {
    use tokio::io::AsyncReadExt;

    let slug = Slug::parse(product).map_err(|e| anyhow::anyhow!("--product: {e}"))?;
    let (mut input, size): (Box<dyn tokio::io::AsyncRead + Unpin>, Option<u64>) =
        if file.as_os_str() == "-" {
            (Box::new(tokio::io::stdin()), None)
        } else {
            let f = tokio::fs::File::open(file)
                .await
                .with_context(|| format!("reading {}", file.display()))?;
            let size = f.metadata().await.ok().map(|m| m.len());
            (Box::new(f), size)
        };
    let name = if file.as_os_str() == "-" {
        "standard input".to_owned()
    } else {
        file.display().to_string()
    };
    let (store, _lock) = open_store(config, "kami cards import").await?;
    let not_found = |e: kami_store::StoreError| match e {
        kami_store::StoreError::ProductNotFound => {
            anyhow::anyhow!("no product with slug {:?}", slug.as_str())
        }
        other => other.into(),
    };
    // No such product: said before the file is read. The whole file is one import batch.
    let open = store
        .begin_card_batch(
            slug.as_str(),
            is_loop,
            &kami_store::Actor::new("cli", None),
            now_ms(),
        )
        .await
        .map_err(not_found)?;
    let bar = match size {
        Some(len) => indicatif::ProgressBar::new(len).with_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} ({bytes_per_sec}, {eta} left)",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        ),
        None => indicatif::ProgressBar::new_spinner(),
    };
    let mut keys = KeyStream::new(IMPORT_BATCH);
    let mut chunk = vec![0u8; 256 * 1024];
    let mut totals = [0u64; 3]; // imported, duplicates, rejected
    let import = |batch: kami_core::cards::ParsedKeys| {
        let store = &store;
        let open = &open;
        async move {
            let r = store
                .import_into_batch(open, batch.keys, now_ms())
                .await
                .map_err(not_found)?;
            anyhow::Ok([
                r.imported,
                r.duplicates + batch.duplicates_in_file,
                batch.rejected,
            ])
        }
    };
    let result: anyhow::Result<()> = async {
        loop {
            let n = input
                .read(&mut chunk)
                .await
                .with_context(|| format!("reading {name}"))?;
            if n == 0 {
                break;
            }
            bar.inc(n as u64);
            let batches = keys
                .push(&chunk[..n])
                .with_context(|| format!("reading {name}"))?;
            for batch in batches {
                let t = import(batch).await?;
                (0..3).for_each(|i| totals[i] += t[i]);
            }
        }
        let last = keys.finish().with_context(|| format!("reading {name}"))?;
        let t = import(last).await?;
        (0..3).for_each(|i| totals[i] += t[i]);
        Ok(())
    }
    .await;
    let [imported, duplicates, rejected] = totals;
    bar.finish_and_clear();
    // Audited whether the import completed or stopped part-way.
    let finished = store.finish_card_batch(&open, rejected, now_ms()).await;
    if let Err(e) = result {
        if imported > 0 {
            return Err(e.context(format!(
                "{imported} keys were imported before this (importing the file again skips them)"
            )));
        }
        return Err(e);
    }
    let batch = finished?;
    println!(
        "imported {imported} keys; {duplicates} duplicates skipped; {rejected} lines rejected \
         (batch {})",
        batch.id
    );
    Ok(())
}

/// `kami admin user disable|enable|remove NAME`: the same store operations (and rules) as the
/// console's users page, audited as `cli`.
async fn change_user(store: &kami_store::Store, command: UserCommand) -> anyhow::Result<()> {
    use kami_store::UserChange;
    let actor = kami_store::Actor::new("cli", None);
    let (name, change, done) = match command {
        UserCommand::Disable { name } => {
            let c = store
                .set_admin_user_enabled(&name, false, &actor, now_ms())
                .await?;
            (name, c, "disabled; its sessions ended")
        }
        UserCommand::Enable { name } => {
            let c = store
                .set_admin_user_enabled(&name, true, &actor, now_ms())
                .await?;
            (name, c, "enabled")
        }
        UserCommand::Remove { name } => {
            let c = store.remove_admin_user(&name, &actor, now_ms()).await?;
            (name, c, "removed")
        }
        UserCommand::Create { .. } | UserCommand::Reset2fa { .. } => return Ok(()),
    };
    match change {
        UserChange::Done { .. } => eprintln!("admin user {name:?} {done}"),
        UserChange::Unchanged => eprintln!("admin user {name:?} already was {done}"),
        UserChange::NotFound => bail!("no admin user named {name:?}"),
        UserChange::LastEnabled => bail!(
            "{name:?} is the last enabled admin user: add or enable another one first \
             (kami admin user create NAME)"
        ),
    }
    Ok(())
}
