//! The Debian package (`infra/debian/build-deb.sh`, `make deb`), built from
//! the debug binary the tests already have: its files and modes, its
//! conffile and maintainer scripts (shellcheck), then installed with the real
//! maintainer scripts into a throwaway root (`dpkg --root`,
//! `--force-script-chrootless`; under fakeroot when the tests do not run as
//! root): the `connector` user, the directories' owners and modes,
//! `systemd-analyze verify` of the installed unit, `validate` of the
//! installed config, an upgrade that keeps the operator's edits, removal and
//! purge.

use sims::tools::{find, repo_root, skip};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn run(command: &mut Command) -> Output {
    let shown = format!("{command:?}");
    let out = command.output().unwrap_or_else(|e| panic!("{shown}: {e}"));
    assert!(
        out.status.success(),
        "{shown} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(command: &mut Command) -> String {
    String::from_utf8_lossy(&run(command).stdout).into_owned()
}

fn build(out: &Path, version: &str) -> PathBuf {
    let script = repo_root().join("infra/debian/build-deb.sh");
    let binary = sims::harness::connector_bin();
    let mut command = Command::new("bash");
    command.arg(script).arg("--binary").arg(&binary).arg("--out").arg(out).args(["--version", version, "--fast"]);
    PathBuf::from(stdout(&mut command).trim())
}

/// Runs commands as root: directly when the tests run as root, else under
/// fakeroot with one ownership database, so that a later `stat` sees the
/// owners dpkg and the maintainer scripts set.
struct AsRoot {
    fakeroot: Option<(PathBuf, PathBuf)>,
}

impl AsRoot {
    fn new(db: &Path) -> Option<AsRoot> {
        if stdout(Command::new("id").arg("-u")).trim() == "0" {
            return Some(AsRoot { fakeroot: None });
        }
        let fakeroot = find("fakeroot")?;
        std::fs::write(db, "").expect("fakeroot database");
        Some(AsRoot { fakeroot: Some((fakeroot, db.to_owned())) })
    }

    fn command(&self, program: &str) -> Command {
        match &self.fakeroot {
            None => Command::new(program),
            Some((fakeroot, db)) => {
                let mut command = Command::new(fakeroot);
                command.arg("-i").arg(db).arg("-s").arg(db).arg("--").arg(program);
                command
            }
        }
    }

    /// `(mode & 0o7777, uid, gid)` of `path`.
    fn stat(&self, path: &Path) -> (u32, u32, u32) {
        let said = stdout(self.command("stat").args(["-c", "%a %u %g"]).arg(path));
        let fields: Vec<&str> = said.split_whitespace().collect();
        let number = |i: usize, radix: u32| u32::from_str_radix(fields[i], radix).expect("stat output");
        (number(0, 8), number(1, 10), number(2, 10))
    }
}

/// `path -> (mode string, owner/group)` from `dpkg-deb --contents`.
fn contents(deb: &Path) -> BTreeMap<String, (String, String)> {
    stdout(Command::new("dpkg-deb").arg("--contents").arg(deb))
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let path = fields[5].trim_start_matches('.').trim_end_matches('/').to_owned();
            (path, (fields[0].to_owned(), fields[1].to_owned()))
        })
        .collect()
}

#[test]
fn the_debian_package_installs_configures_upgrades_and_purges_cleanly() {
    for tool in ["dpkg-deb", "dpkg", "dpkg-query"] {
        if find(tool).is_none() {
            skip("the Debian package test", &format!("{tool} is not installed (a Debian or Ubuntu host has it)"));
            return;
        }
    }
    let work = tempfile::tempdir().expect("temp dir");
    let deb = build(&work.path().join("v1"), "0.1.0");

    // The archive: files, modes, owners; nothing under /usr/local or /var.
    let files = contents(&deb);
    for (path, mode) in [
        ("/usr/bin/memory-connector", "-rwxr-xr-x"),
        ("/usr/lib/systemd/system/memory-connector.service", "-rw-r--r--"),
        ("/usr/lib/sysusers.d/memory-connector.conf", "-rw-r--r--"),
        ("/usr/lib/tmpfiles.d/memory-connector.conf", "-rw-r--r--"),
        ("/etc/memory-connector/config.yaml", "-rw-r-----"),
        ("/usr/share/memory-connector/env.example", "-rw-r--r--"),
        ("/usr/share/memory-connector/prometheus/memory-connector.rules.yml", "-rw-r--r--"),
        ("/usr/share/memory-connector/grafana/memory-connector.json", "-rw-r--r--"),
        ("/usr/share/doc/memory-connector/copyright", "-rw-r--r--"),
    ] {
        let (actual, owner) = files.get(path).unwrap_or_else(|| panic!("{path} is not in the package: {files:?}"));
        assert_eq!((actual.as_str(), owner.as_str()), (mode, "root/root"), "{path}");
    }
    assert!(files.keys().all(|p| !p.starts_with("/usr/local") && !p.starts_with("/var")), "{files:?}");
    let field = |name: &str| stdout(Command::new("dpkg-deb").arg("--field").arg(&deb).arg(name)).trim().to_owned();
    assert_eq!(field("Package"), "memory-connector");
    assert_eq!(field("Version"), "0.1.0");
    assert!(field("Depends").contains("libc6 (>="), "{}", field("Depends"));

    // The control files: the conffile, executable maintainer scripts, shellcheck-clean.
    let control = work.path().join("control");
    run(Command::new("dpkg-deb").arg("--control").arg(&deb).arg(&control));
    assert_eq!(
        std::fs::read_to_string(control.join("conffiles")).expect("conffiles"),
        "/etc/memory-connector/config.yaml\n"
    );
    for script in ["postinst", "prerm", "postrm"] {
        let mode = std::fs::metadata(control.join(script)).expect(script).permissions().mode();
        assert_eq!(mode & 0o777, 0o755, "{script}");
    }
    match find("shellcheck") {
        Some(shellcheck) => {
            run(Command::new(&shellcheck).current_dir(&control).args(["--shell=sh", "postinst", "prerm", "postrm"]));
            run(Command::new(&shellcheck).arg(repo_root().join("infra/debian/build-deb.sh")));
        }
        None => skip(
            "shellcheck of the maintainer scripts",
            "run tests/scripts/deb-tool.sh shellcheck shellcheck .local/pkgtools/bin",
        ),
    }

    // Installing with the real maintainer scripts needs root (dpkg owns files as root).
    let Some(as_root) = AsRoot::new(&work.path().join("fakeroot.db")) else {
        skip("installing the Debian package into a throwaway root", "not root, and fakeroot is not installed");
        return;
    };
    let root = work.path().join("root");
    for dir in ["var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers", "etc"] {
        std::fs::create_dir_all(root.join(dir)).expect("mkdir");
    }
    for file in ["var/lib/dpkg/status", "var/lib/dpkg/available"] {
        std::fs::write(root.join(file), "").expect("touch");
    }
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/bash\n").expect("passwd");
    std::fs::write(root.join("etc/group"), "root:x:0:\nadm:x:4:\n").expect("group");
    let dpkg = |args: &[&str], deb: Option<&Path>| {
        let mut command = as_root.command("dpkg");
        command.arg(format!("--root={}", root.display()));
        command.args(["--force-script-chrootless", "--force-depends", "--log=/dev/null"]).args(args);
        if let Some(deb) = deb {
            command.arg(deb);
        }
        stdout(&mut command)
    };
    dpkg(&["--install"], Some(&deb));

    // The user and the directories, owned and moded as the package says.
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).expect("passwd");
    let user =
        passwd.lines().find(|l| l.starts_with("connector:")).unwrap_or_else(|| panic!("no connector user:\n{passwd}"));
    let fields: Vec<&str> = user.split(':').collect();
    assert_eq!((fields[5], fields[6]), ("/var/lib/memory-connector", "/usr/sbin/nologin"), "{user}");
    let (uid, gid): (u32, u32) = (fields[2].parse().expect("uid"), fields[3].parse().expect("gid"));
    assert!(uid < 1000, "a system user: {user}");
    let group = std::fs::read_to_string(root.join("etc/group")).expect("group");
    assert!(group.lines().any(|l| l.starts_with(&format!("connector:x:{gid}:"))), "{group}");
    for (path, mode, owner, group) in [
        ("var/lib/memory-connector", 0o700, uid, gid),
        ("var/log/memory-connector", 0o750, uid, gid),
        ("etc/memory-connector", 0o750, 0, gid),
        ("etc/memory-connector/config.yaml", 0o640, 0, gid),
        ("etc/memory-connector/.env", 0o640, 0, gid),
        ("usr/bin/memory-connector", 0o755, 0, 0),
    ] {
        assert_eq!(as_root.stat(&root.join(path)), (mode, owner, group), "{path}");
    }
    let query = |format: &str| {
        let admin = format!("--admindir={}", root.join("var/lib/dpkg").display());
        stdout(Command::new("dpkg-query").args([
            admin.as_str(),
            "--show",
            &format!("--showformat={format}"),
            "memory-connector",
        ]))
    };
    assert_eq!(query("${db:Status-Abbrev}").trim(), "ii");
    assert!(query("${Conffiles}").contains("/etc/memory-connector/config.yaml "), "{}", query("${Conffiles}"));

    // The installed unit, as systemd reads it from that root.
    if let Some(analyze) = find("systemd-analyze") {
        // verify wants the targets the unit names; the host's are as good as any.
        let units = root.join("usr/lib/systemd/system");
        for entry in std::fs::read_dir("/lib/systemd/system").into_iter().flatten().flatten() {
            if entry.file_name().to_string_lossy().ends_with(".target") {
                let _ = std::fs::copy(entry.path(), units.join(entry.file_name()));
            }
        }
        let out = Command::new(analyze)
            .args(["verify", "--man=no", &format!("--root={}", root.display()), "memory-connector.service"])
            .env("SYSTEMD_LOG_LEVEL", "warning")
            .output()
            .expect("systemd-analyze");
        let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && !said.contains("memory-connector"), "systemd-analyze verify:\n{said}");
        let unit = std::fs::read_to_string(units.join("memory-connector.service")).expect("unit");
        for line in ["ExecStart=/usr/bin/memory-connector serve", "User=connector", "LimitNOFILE=65536"] {
            assert!(unit.contains(line), "the unit lacks {line}");
        }
    } else {
        skip("systemd-analyze verify of the installed unit", "systemd-analyze is not installed");
    }

    // The installed config is what `validate` accepts once .env is filled in,
    // and refuses, naming each variable, while it is the bare template.
    let config = root.join("etc/memory-connector/config.yaml");
    let validate = || {
        Command::new(root.join("usr/bin/memory-connector"))
            .arg("validate")
            .arg("--config")
            .arg(&config)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .output()
            .expect("run validate")
    };
    let bare = validate();
    let said = String::from_utf8_lossy(&bare.stderr);
    assert_eq!(bare.status.code(), Some(2), "{said}");
    assert!(said.contains("memory_api.url") && said.contains("connectors[0].context_id"), "{said}");
    let env = root.join("etc/memory-connector/.env");
    let filled = std::fs::read_to_string(&env)
        .expect(".env")
        .replace("MEMORY_API_URL=\n", "MEMORY_API_URL=https://memory-api.example.com\n")
        .replace("MEMORY_API_KEY=\n", "MEMORY_API_KEY=mem-key-0123456789\n")
        .replace("MEMORY_CONTEXT_ID=\n", "MEMORY_CONTEXT_ID=CTX123\n")
        .replace("CONNECTOR_API_KEY=\n", "CONNECTOR_API_KEY=api-key-0123456789abcdef\n");
    std::fs::write(&env, &filled).expect("fill .env");
    let valid = validate();
    assert!(valid.status.success(), "{}", String::from_utf8_lossy(&valid.stderr));
    assert!(String::from_utf8_lossy(&valid.stdout).contains("valid (1 connector)"));

    // An upgrade keeps the operator's config edit, .env and state.
    let edited = std::fs::read_to_string(&config).expect("config") + "# edited by the operator\n";
    std::fs::write(&config, &edited).expect("edit config");
    std::fs::write(root.join("var/lib/memory-connector/state.db"), "ledger").expect("state");
    let newer = build(&work.path().join("v2"), "0.1.1");
    dpkg(&["--install"], Some(&newer));
    assert_eq!(query("${Version}").trim(), "0.1.1");
    assert_eq!(std::fs::read_to_string(&config).expect("config"), edited);
    assert_eq!(std::fs::read_to_string(&env).expect(".env"), filled);
    assert_eq!(as_root.stat(&config), (0o640, 0, gid), "the upgrade keeps the config's owner and mode");

    // Remove keeps the configuration; purge removes it and the logs, keeps the state.
    dpkg(&["--remove", "memory-connector"], None);
    assert!(!root.join("usr/bin/memory-connector").exists());
    assert!(config.exists() && env.exists(), "remove keeps the configuration");
    dpkg(&["--purge", "memory-connector"], None);
    assert!(!config.exists() && !env.exists() && !root.join("etc/memory-connector").exists());
    assert!(!root.join("var/log/memory-connector").exists());
    assert_eq!(std::fs::read_to_string(root.join("var/lib/memory-connector/state.db")).expect("state"), "ledger");
}
