//! The files of docker/ as the tests read them: paths, YAML, the image's settings.

use std::path::{Path, PathBuf};

use serde_norway::Value as Yaml;

pub fn docker(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docker")
        .join(path)
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn yaml(text: &str) -> Yaml {
    serde_norway::from_str(text).unwrap_or_else(|e| panic!("not YAML ({e}):\n{text}"))
}

/// The documents of a multi-document YAML file.
pub fn yaml_documents(path: &Path) -> Vec<Yaml> {
    use serde::Deserialize;
    serde_norway::Deserializer::from_str(&read(path))
        .map(|doc| Yaml::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .collect()
}

pub fn text(v: &Yaml) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v:?}"))
}

/// `KEY=value` of the runtime image's `ENV`.
pub fn dockerfile_env(key: &str) -> String {
    let dockerfile = read(&docker("Dockerfile"));
    let at = dockerfile
        .find(&format!("{key}="))
        .unwrap_or_else(|| panic!("no {key} in the Dockerfile"));
    dockerfile[at + key.len() + 1..]
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

pub fn port_of(addr: &str) -> &str {
    addr.rsplit(':').next().unwrap()
}

pub fn words(v: &Yaml) -> Vec<&str> {
    v.as_sequence().unwrap().iter().map(text).collect()
}
