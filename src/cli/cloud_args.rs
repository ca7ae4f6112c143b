//! Flags shared by every command that talks to a cloud (`images`, and later `download`,
//! `upload`, `share`, `migrate`), and the connection they lead to.
//!
//! Owns `--os-cloud` / `OS_CLOUD` and `--project`, and turning them into a connected
//! [`Glance`]. It must not print except through [`Output`].

use super::{Failure, Output};
use crate::cloud::config::{CloudCatalog, ConfigEnv};
use crate::cloud::glance::Glance;
use crate::cloud::keystone::{Session, SessionOptions};

/// Which cloud and project to use.
#[derive(Debug, Clone, clap::Args)]
pub struct CloudArgs {
    /// The cloud, by its name in clouds.yaml (default: the OS_* variables, or the only cloud).
    #[arg(
        long = "os-cloud",
        env = "OS_CLOUD",
        value_name = "NAME",
        global = true
    )]
    pub os_cloud: Option<String>,
    /// Work in this project (name or id) with the cloud's credentials.
    #[arg(long, value_name = "NAME_OR_ID", global = true)]
    pub project: Option<String>,
}

impl CloudArgs {
    /// Loads the configuration, authenticates and discovers the Image API.
    pub fn connect_glance(&self, output: &Output) -> Result<Glance, Failure> {
        let config = CloudCatalog::load(&ConfigEnv::from_process())?
            .select(self.os_cloud.as_deref().filter(|name| !name.is_empty()))?;
        let options = SessionOptions {
            project: self.project.clone(),
            ..SessionOptions::default()
        };
        let session = Session::connect(&config, &options, &output.reporter())?;
        Ok(Glance::connect(session)?)
    }
}
