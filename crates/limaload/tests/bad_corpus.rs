//! Every file in `tests/bad/` must fail to load with a diagnostic naming the field (and line)
//! given by its first line, `# expect: FIELD LINE` (`-` = not checked). Also big and binary
//! inputs, generated here rather than stored.

use std::path::{Path, PathBuf};

use limaload::{load, LoadOptions};

fn opts(lima_home: &Path) -> LoadOptions {
    LoadOptions {
        host: limatype::HostFacts {
            os: limatype::Os::Linux,
            arch: limatype::Arch::X86_64,
            cpus: 4,
            memory: limatype::ByteSize(8 << 30),
            user_name: "tester".into(),
            user_comment: String::new(),
            uid: 1000,
            home: "/home/tester".into(),
            timezone: "UTC".into(),
            machine_id: String::new(),
            lima_home: lima_home.to_path_buf(),
            temp_dir: "/tmp".into(),
        },
        template_dirs: vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/templates")],
        name: Some("bad".into()),
        use_config_files: false,
        use_default_base: false,
    }
}

fn bad_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_bad_file_names_its_field_and_line() {
    let home = tempfile::tempdir().unwrap();
    let files = bad_files();
    assert!(files.len() >= 25, "corpus went missing: {files:?}");
    let mut failures = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{} has no `# expect:` line", file.display()));
        let (field, line) = expect.split_once(' ').unwrap();
        let result = load(&file.display().to_string(), &opts(home.path()));
        let Err(err) = result else {
            failures.push(format!("{}: loaded without error", file.display()));
            continue;
        };
        let found = err.0.iter().any(|d| {
            (field == "-" || d.field == field)
                && (line == "-" || d.line.map(|l| l.to_string()).as_deref() == Some(line))
                && !d.message.is_empty()
        });
        if !found {
            failures.push(format!(
                "{}: want field {field} line {line}, got:\n{err}",
                file.display()
            ));
        }
        // Every diagnostic names the file it is about.
        for d in &err.0 {
            assert!(!d.file.is_empty(), "{d:?}");
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn big_and_binary_files_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.yaml");
    let mut data = b"cpus: 1\n".to_vec();
    data.resize(5 << 20, b'#');
    std::fs::write(&big, &data).unwrap();
    let err = load(&big.display().to_string(), &opts(dir.path())).unwrap_err();
    assert!(
        err.to_string().contains("big.yaml") && err.to_string().contains("limit"),
        "{err}"
    );

    let bin = dir.path().join("bin.yaml");
    let bytes: Vec<u8> = (0..100_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&bin, &bytes).unwrap();
    let err = load(&bin.display().to_string(), &opts(dir.path())).unwrap_err();
    assert!(err.to_string().contains("bin.yaml"), "{err}");
}

#[test]
fn fixture_template_loads() {
    let home = tempfile::tempdir().unwrap();
    let loaded = load("template:tiny", &opts(home.path())).unwrap();
    assert_eq!(loaded.config.yaml().cpus, Some(1));
    assert_eq!(loaded.config.images.clone().unwrap().len(), 2);
}
