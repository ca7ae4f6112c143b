//! `imgferry share IMAGE --project ID` (run as the owner) and `imgferry share IMAGE
//! --accept` (run as the project it was shared with).
//!
//! Owns the two sides of Glance image membership as one command. A private image cannot
//! have members, so sharing one first sets its visibility to `shared` (and says so).

use serde_json::json;

use super::cloud_args::CloudArgs;
use super::{Failure, Output};
use crate::cloud::glance::{MemberStatus, PatchOp};
use crate::cloud::CloudError;
use crate::exit::ExitCode;
use crate::report::{Event, Reporter};
use crate::transfer::RetryPolicy;

/// Arguments of `imgferry share`.
#[derive(Debug, clap::Args)]
#[command(
    group(clap::ArgGroup::new("side").required(true).args(["project", "accept"])),
    after_help = "Sharing takes two steps, one on each side:\n  \
        1. the image's owner runs:        imgferry share IMAGE --project TARGET_PROJECT_ID\n  \
        2. the target project runs:       imgferry share IMAGE_ID --accept\n\
        Inside one cloud, sharing is often better than copying: no bytes move. \
        The member must be a project ID (Glance stores a name literally, and it never \
        matches). A pending share is only visible by id, so accept by id."
)]
pub struct ShareArgs {
    /// The image: by id or name when sharing; by id when accepting.
    pub image: String,
    /// (owner side) Share the image with this project, by ID.
    #[arg(long, value_name = "PROJECT_ID", conflicts_with = "accept")]
    pub project: Option<String>,
    /// (member side) Accept the image shared with the project you authenticate to.
    #[arg(long)]
    pub accept: bool,
}

/// Runs the command.
pub fn run(args: ShareArgs, cloud: &CloudArgs, output: &Output) -> Result<ExitCode, Failure> {
    let mut glance = cloud.connect_glance(output)?;
    let reporter = output.reporter();
    // Every request here is retried on transient answers. Adding a member is made safe
    // to repeat: Glance answers 409 when the project already is one (a retry after a
    // lost answer, or a second run), and then the existing member is the answer.
    let retry = RetryPolicy::metadata();
    if let Some(project) = &args.project {
        if !looks_like_project_id(project) {
            reporter.warn(&format!(
                "`{project}` does not look like a project ID; Glance matches members by ID only"
            ));
        }
        let image = glance.resolve(&args.image)?;
        if image.visibility.as_deref() == Some("private") {
            let shared = [PatchOp::Set {
                property: "visibility".into(),
                value: "shared".into(),
            }];
            retry.run(|| glance.update(&image.id, &shared))?;
            reporter.event(
                Event::new(
                    "share.visibility",
                    format!(
                        "image {} was private; set its visibility to shared",
                        image.id
                    ),
                )
                .with("image_id", image.id.clone()),
            );
        }
        let mut existing = false;
        let member = retry.run(|| match glance.add_member(&image.id, project) {
            // A 409 with no such member has another cause: that error is the answer.
            Err(conflict @ CloudError::Http { status: 409, .. }) => {
                let found = glance.member(&image.id, project).map_err(|_| conflict)?;
                existing = true;
                Ok(found)
            }
            answer => answer,
        })?;
        if existing {
            reporter.event(
                Event::new(
                    "share.existing",
                    format!(
                        "project {} already is a member of image {} (status {})",
                        member.member_id, member.image_id, member.status
                    ),
                )
                .with("image_id", member.image_id.clone())
                .with("status", member.status.clone()),
            );
        }
        let human = format!(
            "shared image {} with project {} (status {}); that project accepts with: imgferry share {} --accept",
            member.image_id, member.member_id, member.status, member.image_id
        );
        output.summary(
            "share",
            json!({"image_id": member.image_id, "member_id": member.member_id, "status": member.status}),
            &human,
        );
    } else {
        let project = glance
            .session()
            .token()
            .project
            .as_ref()
            .map(|p| p.id.clone())
            .ok_or_else(|| {
                Failure::new("the session is not scoped to a project; nothing can accept the share")
            })?;
        let image_id = match glance.show(&args.image) {
            Ok(image) => image.id,
            Err(CloudError::ImageNotFound { .. }) => glance.resolve(&args.image)?.id,
            Err(other) => return Err(other.into()),
        };
        let member =
            retry.run(|| glance.update_member(&image_id, &project, MemberStatus::Accepted))?;
        let human = format!(
            "project {} accepted image {} (status {})",
            member.member_id, member.image_id, member.status
        );
        output.summary(
            "share",
            json!({"image_id": member.image_id, "member_id": member.member_id, "status": member.status}),
            &human,
        );
    }
    Ok(ExitCode::Success)
}

/// Keystone ids are 32 hex digits (or a UUID with dashes from some identity backends).
fn looks_like_project_id(text: &str) -> bool {
    let hex: String = text.chars().filter(|&c| c != '-').collect();
    hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit())
}
