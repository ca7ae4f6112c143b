//! Flags of every command that talks to a cloud (`images`, `download`, `upload`, `share`;
//! `migrate` and `template` read them as their source side), and the connection they lead to.
//!
//! Owns `--os-cloud` / `OS_CLOUD` and `--os-project-name` / `--os-project-id` (with
//! `OS_PROJECT_NAME` / `OS_PROJECT_ID`, as the openstack CLI reads them), and turning them
//! into a connected [`Glance`]. They are global: accepted before the subcommand, as in
//! `openstack --os-cloud prod image list`, and after it. `--project` is left to commands that name another project
//! (`share`, `migrate`). It must not print except through [`Output`].

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
        hide_env_values = true,
        value_name = "NAME",
        global = true,
        help_heading = "Cloud options"
    )]
    pub os_cloud: Option<String>,
    /// Work in this project (by name) with the cloud's credentials, instead of the one
    /// configured for the cloud.
    #[arg(
        long = "os-project-name",
        env = "OS_PROJECT_NAME",
        hide_env_values = true,
        value_name = "NAME",
        global = true,
        help_heading = "Cloud options"
    )]
    pub os_project_name: Option<String>,
    /// Work in this project (by id) with the cloud's credentials (wins over a name: an
    /// openrc file exports both).
    #[arg(
        long = "os-project-id",
        env = "OS_PROJECT_ID",
        hide_env_values = true,
        value_name = "ID",
        global = true,
        help_heading = "Cloud options"
    )]
    pub os_project_id: Option<String>,
}

impl CloudArgs {
    /// The project asked for (by id, else by name), if any.
    pub fn project(&self) -> Option<String> {
        self.os_project_id
            .clone()
            .or_else(|| self.os_project_name.clone())
            .filter(|project| !project.is_empty())
    }

    /// Loads the configuration, authenticates and discovers the Image API.
    pub fn connect_glance(&self, output: &Output) -> Result<Glance, Failure> {
        let config = CloudCatalog::load(&ConfigEnv::from_process())?
            .select(self.os_cloud.as_deref().filter(|name| !name.is_empty()))?;
        let options = SessionOptions {
            project: self.project(),
            ..SessionOptions::default()
        };
        let session = Session::connect(&config, &options, &output.reporter())?;
        Ok(Glance::connect(session)?)
    }
}
