//! A Lambda runtime without a tz database (provided.al2023 may have no
//! `/usr/share/zoneinfo`) still reads a config whose schedules name a zone:
//! the functions carry jiff's bundled copy. The check runs in a child
//! process of this test whose `TZDIR` is an empty folder from the start.

#[test]
fn a_zoned_config_loads_without_a_system_tz_database() {
    if std::env::var_os("TZDB_CHILD").is_none() {
        let empty = tempfile::tempdir().expect("dir");
        let exe = std::env::current_exe().expect("exe");
        let status = std::process::Command::new(exe)
            .args(["--exact", "a_zoned_config_loads_without_a_system_tz_database", "--nocapture"])
            .env("TZDB_CHILD", "1")
            .env("TZDIR", empty.path())
            .status()
            .expect("child");
        assert!(status.success(), "the child failed");
        return;
    }
    let yaml = r#"
memory_api:
  url: "http://127.0.0.1:9"
  api_key: "k"
connectors:
  - id: paris
    context_id: C1
    schedule: {type: cron, cron: "0 9 * * 1-5", timezone: Europe/Paris}
"#;
    let env = connector_core::config::Environment::from_map([]);
    let config = connector_core::config::load_str(yaml, "config.yaml", &env).unwrap_or_else(|e| panic!("{e}"));
    let zone = connector_core::schedule::zone(&config.connectors[0].schedule).expect("a zone");
    assert_eq!(zone.iana_name(), Some("Europe/Paris"));
}
