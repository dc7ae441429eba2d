//! The manifests folder: every `*.yaml`, `*.yml` and `*.json` file in it (not recursive), read
//! like `kubectl apply -f DIR` would send them, and watched by polling names, sizes and mtimes.
//!
//! The folder plays the API server's part: an object that fails its schema or CEL rules, or a
//! file that is not YAML, is refused with a clear error and the last accepted version of its
//! objects stays in force, so a typo never deletes anything.

use super::state::Accepted;
use crate::crd::manifest::{check_update, parse_file, Object};
use crate::reconcile::Desired;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// A watched manifests folder.
#[derive(Debug)]
pub struct ManifestDir {
    dir: PathBuf,
    seen: Option<Vec<(String, Option<SystemTime>, u64)>>,
}

impl ManifestDir {
    /// Watch `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> ManifestDir {
        ManifestDir {
            dir: dir.into(),
            seen: None,
        }
    }

    fn files(&self) -> std::io::Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let path = entry?.path();
            let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
            if path.is_file() && ["yaml", "yml", "json"].contains(&ext) {
                out.push(path);
            }
        }
        out.sort();
        Ok(out)
    }

    fn fingerprint(&self) -> Vec<(String, Option<SystemTime>, u64)> {
        self.files()
            .unwrap_or_default()
            .into_iter()
            .map(|p| {
                let meta = std::fs::metadata(&p).ok();
                (
                    p.display().to_string(),
                    meta.as_ref().and_then(|m| m.modified().ok()),
                    meta.map_or(0, |m| m.len()),
                )
            })
            .collect()
    }

    /// Whether any file was added, removed or changed since the last [`ManifestDir::read`].
    pub fn changed(&self) -> bool {
        self.seen.as_ref() != Some(&self.fingerprint())
    }

    /// Read every file. `accepted` (the last accepted objects) is updated in place.
    pub fn read(&mut self, accepted: &mut BTreeMap<String, Accepted>) -> Desired {
        self.seen = Some(self.fingerprint());
        let mut desired = Desired::default();
        let files = match self.files() {
            Ok(f) => f,
            Err(e) => {
                desired.errors.push(format!("{}: {e}", self.dir.display()));
                return keep_all(desired, accepted);
            }
        };
        let mut objects: BTreeMap<String, Object> = BTreeMap::new();
        for path in files {
            let label = path.display().to_string();
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) => {
                    desired.errors.push(format!("{label}: {e}"));
                    keep_file(&label, accepted, &mut objects);
                    continue;
                }
            };
            let mut broken = false;
            for result in parse_file(&label, &text) {
                match result {
                    Err(e) => {
                        desired.errors.push(e.to_string());
                        broken = true;
                    }
                    Ok(obj) => {
                        let key = obj.key();
                        if objects.contains_key(&key) {
                            desired
                                .errors
                                .push(format!("{label}: {key} is defined twice"));
                            continue;
                        }
                        let obj = admit(obj, &label, accepted, &mut desired.errors);
                        objects.insert(key, obj);
                    }
                }
            }
            if broken {
                keep_file(&label, accepted, &mut objects);
            }
        }
        let namespaces: BTreeSet<String> = objects
            .keys()
            .filter_map(|k| k.split('/').nth(1).map(str::to_owned))
            .collect();
        if namespaces.len() > 1 {
            desired.errors.push(format!(
                "the local platform runs one namespace; the manifests use {}",
                namespaces.into_iter().collect::<Vec<_>>().join(", ")
            ));
        }
        accepted.retain(|k, _| objects.contains_key(k));
        for obj in objects.into_values() {
            match obj {
                Object::FileCluster(o) => desired.clusters.push(o),
                Object::HashRange(o) => desired.ranges.push(o),
            }
        }
        desired
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Accept `obj` as an update of its last accepted version (transition rules, generation), or
/// refuse it and keep the old one.
fn admit(
    obj: Object,
    file: &str,
    accepted: &mut BTreeMap<String, Accepted>,
    errors: &mut Vec<String>,
) -> Object {
    let key = obj.key();
    let json = to_json(&obj);
    let generation = match accepted.get(&key).map(|a| (a, from_json(&a.object))) {
        Some((old, Some(old_obj))) => {
            if let Err(e) = check_update(&obj, &old_obj) {
                errors.push(format!("{file}: {key}: {e}"));
                return with_generation(old_obj, old.generation);
            }
            if old.object.get("spec") == json.get("spec") {
                old.generation
            } else {
                old.generation + 1
            }
        }
        _ => 1,
    };
    accepted.insert(
        key,
        Accepted {
            generation,
            object: json,
            file: file.to_string(),
        },
    );
    with_generation(obj, generation)
}

/// A file that could not be read: its objects stay as last accepted.
fn keep_file(
    file: &str,
    accepted: &BTreeMap<String, Accepted>,
    objects: &mut BTreeMap<String, Object>,
) {
    for (key, a) in accepted.iter().filter(|(_, a)| a.file == file) {
        if let (false, Some(o)) = (objects.contains_key(key), from_json(&a.object)) {
            objects.insert(key.clone(), with_generation(o, a.generation));
        }
    }
}

fn keep_all(mut desired: Desired, accepted: &BTreeMap<String, Accepted>) -> Desired {
    for a in accepted.values() {
        match from_json(&a.object).map(|o| with_generation(o, a.generation)) {
            Some(Object::FileCluster(o)) => desired.clusters.push(o),
            Some(Object::HashRange(o)) => desired.ranges.push(o),
            None => {}
        }
    }
    desired
}

fn to_json(obj: &Object) -> serde_json::Value {
    match obj {
        Object::FileCluster(o) => serde_json::to_value(o),
        Object::HashRange(o) => serde_json::to_value(o),
    }
    .expect("objects serialize")
}

fn from_json(v: &serde_json::Value) -> Option<Object> {
    match v.get("kind")?.as_str()? {
        "FileCluster" => serde_json::from_value(v.clone())
            .ok()
            .map(Object::FileCluster),
        "HashRange" => serde_json::from_value(v.clone())
            .ok()
            .map(Object::HashRange),
        _ => None,
    }
}

fn with_generation(obj: Object, generation: i64) -> Object {
    match obj {
        Object::FileCluster(mut o) => {
            o.metadata.generation = Some(generation);
            Object::FileCluster(o)
        }
        Object::HashRange(mut o) => {
            o.metadata.generation = Some(generation);
            Object::HashRange(o)
        }
    }
}
