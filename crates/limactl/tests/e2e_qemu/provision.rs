//! `provision` modes, `message` and `copyToHost` on the shared instance (no extra boot): a
//! `dependency` script runs before the `system` one (both append to one guest file); two `yq`
//! steps create then edit a guest YAML file (its owner and mode as the step says); `message`
//! is printed after READY with its template rendered; the yq file arrives on the host through
//! `copyToHost` and is removed at stop (`deleteOnStop`).

use super::*;

const ORDER: &str = "/var/tmp/lima-e2e-provision-order";
const YQ_FILE: &str = "/etc/lima-e2e/yq.yaml";

/// Where `copyToHost` puts the guest's yq file for instance `name`.
fn copied(env: &Env, name: &str) -> PathBuf {
    env.home.path().join(format!("_copied-{name}/yq.yaml"))
}

/// The steps, message and copy rule, appended to the instance's yaml.
pub fn add_to_yaml(env: &Env, v: &mut serde_yaml::Value, name: &str) {
    let m = v.as_mapping_mut().unwrap();
    let steps: serde_yaml::Value = serde_yaml::from_str(&format!(
        r##"
- mode: system
  script: "#!/bin/sh\necho system >> {ORDER}\n"
- mode: dependency
  script: "#!/bin/sh\nrm -f {ORDER}\necho dependency >> {ORDER}\n"
- mode: yq
  path: {YQ_FILE}
  expression: .greeting = "hello" | .user = "{{{{.User}}}}"
  permissions: "640"
- mode: yq
  path: {YQ_FILE}
  expression: .edited = true
"##
    ))
    .unwrap();
    let provision = m
        .entry("provision".into())
        .or_insert_with(|| serde_yaml::Value::Sequence(vec![]));
    provision
        .as_sequence_mut()
        .unwrap()
        .extend(steps.as_sequence().unwrap().iter().cloned());
    m.insert(
        "message".into(),
        "e2e message for {{.Name}}\nssh port {{.SSHLocalPort}}\n".into(),
    );
    let rule: serde_yaml::Value = serde_yaml::from_str(&format!(
        "guest: {YQ_FILE}\nhost: {}\ndeleteOnStop: true\n",
        copied(env, name).display()
    ))
    .unwrap();
    m.insert("copyToHost".into(), serde_yaml::Value::Sequence(vec![rule]));
}

/// After the first start: `said` is its stderr.
pub fn check(env: &Env, name: &str, said: &str) {
    let ready = said.find("READY. Run").expect("READY line");
    let msg = said
        .find(&format!("Message from the instance `{name}`:"))
        .expect("message header");
    let body = said
        .find(&format!("\ne2e message for {name}\nssh port "))
        .expect("rendered message lines");
    assert!(ready < msg && msg < body, "{said}");

    let order = env.ok(&["shell", name, "cat", ORDER]);
    assert_eq!(order, "dependency\nsystem\n", "dependency must run first");

    let text = env.ok(&["shell", name, "sudo", "cat", YQ_FILE]);
    let v: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let user = env.ok(&["shell", name, "id", "-un"]);
    assert_eq!(v["greeting"].as_str(), Some("hello"), "{text}");
    assert_eq!(v["user"].as_str(), Some(user.trim()), "{text}");
    assert_eq!(v["edited"].as_bool(), Some(true), "{text}");
    let stat = env.ok(&["shell", name, "sudo", "stat", "-c", "%a %U", YQ_FILE]);
    assert_eq!(stat.trim(), "644 root", "the last step's mode wins");

    let host = std::fs::read_to_string(copied(env, name)).expect("copyToHost file");
    assert_eq!(host, text);
}

/// After `limactl stop`: the copied file is gone (`deleteOnStop`).
pub fn after_stop(env: &Env, name: &str) {
    assert!(
        !copied(env, name).exists(),
        "deleteOnStop left {}",
        copied(env, name).display()
    );
}
