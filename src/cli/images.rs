//! `imgferry images list|show`: the images a project can see, from Glance v2.
//!
//! Owns the presentation of image records: a table or a `key: value` listing for people,
//! the documented JSON objects for `--json`. Text that comes from the server is made
//! printable before it reaches a terminal.

use std::fmt::Write as _;
use std::time::Instant;

use clap::Subcommand;
use serde_json::{json, Value};

use super::cloud_args::CloudArgs;
use super::{Failure, Output};
use crate::cloud::glance::{Glance, Image, ListFilter};
use crate::exit::ExitCode;
use crate::report::{Event, Reporter};

/// Arguments of `imgferry images`.
#[derive(Debug, clap::Args)]
pub struct ImagesArgs {
    #[command(subcommand)]
    pub action: ImagesAction,
}

/// What to do with images.
#[derive(Debug, Subcommand)]
pub enum ImagesAction {
    /// List the images the project can see (id, name, status, disk format, size, visibility).
    List,
    /// Show one image's record and properties.
    Show {
        /// The image, by id or by name (a name must match exactly one image).
        image: String,
    },
}

/// Runs the command.
pub fn run(args: ImagesArgs, cloud: &CloudArgs, output: &Output) -> Result<ExitCode, Failure> {
    let mut glance = cloud.connect_glance(output)?;
    match args.action {
        ImagesAction::List => list(&mut glance, output),
        ImagesAction::Show { image } => show(&mut glance, &image, output),
    }
}

fn list(glance: &mut Glance, output: &Output) -> Result<ExitCode, Failure> {
    let started = Instant::now();
    let images = glance.list(&ListFilter::default())?;
    let elapsed_ms = started.elapsed().as_millis() as u64;
    output.reporter().event(
        Event::new(
            "images.listed",
            format!("listed {} images in {elapsed_ms} ms", images.len()),
        )
        .with("count", images.len())
        .with("ms", elapsed_ms),
    );
    let summaries: Vec<Value> = images
        .iter()
        .map(|i| {
            json!({
                "id": i.id, "name": i.name, "status": i.status, "disk_format": i.disk_format,
                "size": i.size, "visibility": i.visibility,
            })
        })
        .collect();
    let value = json!({
        "cloud": glance.session().cloud(),
        "project": glance.session().token().project.as_ref().map(|p| json!({"id": p.id, "name": p.name})),
        "images": summaries,
    });
    output.result("images list", value, &table(&images));
    Ok(ExitCode::Success)
}

fn show(glance: &mut Glance, wanted: &str, output: &Output) -> Result<ExitCode, Failure> {
    let image = glance.resolve(wanted)?;
    let record = serde_json::to_value(&image).map_err(Failure::new)?;
    output.result("images show", json!({ "image": record }), &details(&image));
    Ok(ExitCode::Success)
}

fn table(images: &[Image]) -> String {
    let header = ["ID", "NAME", "STATUS", "DISK_FORMAT", "SIZE", "VISIBILITY"].map(str::to_owned);
    let mut rows = vec![header];
    for image in images {
        rows.push([
            printable(&image.id),
            printable(image.display_name()),
            printable(&image.status),
            printable(image.disk_format.as_deref().unwrap_or("-")),
            image.size.map_or_else(|| "-".into(), |s| s.to_string()),
            printable(image.visibility.as_deref().unwrap_or("-")),
        ]);
    }
    let mut widths = [0usize; 6];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    for row in &rows {
        let mut line = String::new();
        for (index, (cell, width)) in row.iter().zip(widths).enumerate() {
            if index == 4 {
                let _ = write!(line, "{cell:>width$}  ");
            } else {
                let _ = write!(line, "{cell:<width$}  ");
            }
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

fn details(image: &Image) -> String {
    let optional = |v: &Option<String>| printable(v.as_deref().unwrap_or("-"));
    let number = |v: Option<u64>| v.map_or_else(|| "-".into(), |n| n.to_string());
    let mut fields: Vec<(String, String)> = [
        ("id", printable(&image.id)),
        ("name", printable(image.display_name())),
        ("status", printable(&image.status)),
        ("visibility", optional(&image.visibility)),
        ("disk_format", optional(&image.disk_format)),
        ("container_format", optional(&image.container_format)),
        ("size", number(image.size)),
        ("virtual_size", number(image.virtual_size)),
        ("checksum", optional(&image.checksum)),
        ("os_hash_algo", optional(&image.os_hash_algo)),
        ("os_hash_value", optional(&image.os_hash_value)),
        ("owner", optional(&image.owner)),
        (
            "protected",
            image
                .protected
                .map_or_else(|| "-".into(), |p| p.to_string()),
        ),
        ("min_disk", number(image.min_disk)),
        ("min_ram", number(image.min_ram)),
        ("created_at", optional(&image.created_at)),
        ("updated_at", optional(&image.updated_at)),
        ("tags", printable(&image.tags.join(", "))),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    for (key, value) in &image.properties {
        let shown = match value {
            Value::String(s) => printable(s),
            other => printable(&other.to_string()),
        };
        fields.push((printable(key), shown));
    }
    let width = fields
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    let mut text = String::new();
    for (key, value) in fields {
        let _ = writeln!(text, "{key:<width$}  {value}");
    }
    text
}

/// Server text with control characters (terminal escapes) replaced.
pub(super) fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}
