//! Turns a configuration into a loader, and a folder or bundle into a compiled policy:
//! read (bounded), verify the signature, compile.

use std::path::Path;
use std::time::Duration;

use ligand_opa_bundle::{Bundle, Limits, SignatureError, VerificationKey, Verifier};

use crate::compiled::{CacheSettings, Compiled, Rules};
use crate::config::RegorusConfig;
use crate::error::LoadError;

/// Everything needed to accept or refuse a policy, fixed at construction.
#[derive(Debug)]
pub(crate) struct Loader {
    verifier: Option<Verifier>,
    required: bool,
    rules: Rules,
    time_limit: Duration,
    cache: CacheSettings,
    limits: Limits,
}

impl Loader {
    pub(crate) fn new(config: &RegorusConfig) -> Result<Self, LoadError> {
        if config.folder.is_some() && config.bundle.is_some() {
            return Err(LoadError::Config(
                "set either folder or bundle, not both".into(),
            ));
        }
        let rules = Rules::new(&config.allow_rule, &config.reason_rule)?;
        let signing = &config.signing;
        let required = signing.is_required();
        if required && signing.keys.is_empty() {
            return Err(LoadError::Config(
                "bundle signatures are required but no verification key is configured".into(),
            ));
        }
        let verifier = if signing.keys.is_empty() {
            None
        } else {
            let mut verifier = Verifier::new();
            for key in &signing.keys {
                let pem = match (&key.pem, &key.path) {
                    (Some(pem), None) => pem.clone().into_bytes(),
                    (None, Some(path)) => std::fs::read(path).map_err(|source| LoadError::Io {
                        path: path.display().to_string(),
                        source,
                    })?,
                    _ => {
                        return Err(LoadError::Config(format!(
                            "verification key {:?} needs exactly one of pem and path",
                            key.id
                        )));
                    }
                };
                let verification =
                    VerificationKey::from_pem(&key.algorithm, &pem).map_err(|e| {
                        LoadError::Config(format!("verification key {:?}: {e}", key.id))
                    })?;
                verifier = verifier.key(key.id.clone(), verification);
            }
            if let Some(scope) = &signing.scope {
                verifier = verifier.scope(scope.clone());
            }
            Some(verifier)
        };
        if config.eval_time_limit_ms == 0 {
            return Err(LoadError::Config(
                "eval_time_limit_ms must be above 0".into(),
            ));
        }
        Ok(Self {
            verifier,
            required,
            rules,
            time_limit: config.eval_time_limit(),
            cache: CacheSettings {
                enabled: config.cache,
                capacity: config.cache_capacity,
            },
            limits: Limits::default(),
        })
    }

    /// Loads an OPA bundle archive.
    pub(crate) fn load_archive(&self, archive: &[u8]) -> Result<Compiled, LoadError> {
        let bundle = Bundle::from_tar_gz(archive, &self.limits)?;
        self.load(&bundle, None)
    }

    /// Loads an OPA bundle archive from a file.
    pub(crate) fn load_archive_file(&self, path: &Path) -> Result<Compiled, LoadError> {
        let archive = std::fs::read(path).map_err(|source| LoadError::Io {
            path: path.display().to_string(),
            source,
        })?;
        self.load_archive(&archive)
    }

    /// Loads a policy folder (an unpacked bundle). Error messages name files by their path on
    /// disk.
    pub(crate) fn load_folder(&self, dir: &Path) -> Result<Compiled, LoadError> {
        self.load_read_folder(&Self::read_folder(dir)?, dir)
    }

    /// Reads a policy folder without compiling it.
    pub(crate) fn read_folder(dir: &Path) -> Result<Bundle, LoadError> {
        Ok(Bundle::from_dir(dir)?)
    }

    /// Loads `bundle`, read from the folder `dir` by [`Loader::read_folder`].
    pub(crate) fn load_read_folder(
        &self,
        bundle: &Bundle,
        dir: &Path,
    ) -> Result<Compiled, LoadError> {
        self.load(bundle, Some(dir))
    }

    fn load(&self, bundle: &Bundle, dir: Option<&Path>) -> Result<Compiled, LoadError> {
        self.verify(bundle)?;
        let modules: Vec<(String, String)> = bundle
            .modules()?
            .into_iter()
            .map(|(path, source)| {
                let file = match dir {
                    Some(dir) => dir.join(path).display().to_string(),
                    None => path.to_owned(),
                };
                (file, source.to_owned())
            })
            .collect();
        let data = bundle.data()?;
        Compiled::new(
            &modules,
            data,
            &self.rules,
            bundle.revision().map(str::to_owned),
            self.time_limit,
            self.cache,
        )
    }

    /// A signed bundle must verify whenever keys are configured; an unsigned one is refused
    /// when signatures are required.
    fn verify(&self, bundle: &Bundle) -> Result<(), LoadError> {
        match (&self.verifier, bundle.signatures()) {
            (Some(verifier), Some(_)) => {
                verifier.verify(bundle)?;
                Ok(())
            }
            (_, None) if self.required => Err(SignatureError::Unsigned.into()),
            (None, Some(_)) => {
                tracing::warn!(
                    "policy bundle carries signatures but no verification key is configured; \
                     the signatures are not checked"
                );
                Ok(())
            }
            _ => Ok(()),
        }
    }
}
