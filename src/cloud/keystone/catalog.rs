//! The service catalog of a Keystone v3 token and the choice of one endpoint from it.
//!
//! Owns the catalog's wire types and the selection rule: endpoints of the wanted service
//! type, at the wanted interface, in the wanted region (or the only region there is). It
//! must not make requests.

use serde::Deserialize;
use url::Url;

use crate::cloud::config::Interface;
use crate::cloud::CloudError;

/// One service of the catalog.
#[derive(Debug, Clone, Deserialize)]
pub struct CatalogService {
    #[serde(rename = "type")]
    pub service_type: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub endpoints: Vec<CatalogEndpoint>,
}

/// One endpoint of a service.
#[derive(Debug, Clone, Deserialize)]
pub struct CatalogEndpoint {
    pub interface: String,
    #[serde(default)]
    pub region_id: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    pub url: String,
}

impl CatalogEndpoint {
    fn region_name(&self) -> Option<&str> {
        self.region_id.as_deref().or(self.region.as_deref())
    }

    fn in_region(&self, region: &str) -> bool {
        self.region_id.as_deref() == Some(region) || self.region.as_deref() == Some(region)
    }
}

/// The URL of `service_type` at `interface`, in `region` if given; with no region, the
/// endpoints must all be in one region.
pub fn select_endpoint(
    catalog: &[CatalogService],
    service_type: &str,
    interface: Interface,
    region: Option<&str>,
) -> Result<Url, CloudError> {
    let all: Vec<&CatalogEndpoint> = catalog
        .iter()
        .filter(|s| s.service_type == service_type)
        .flat_map(|s| &s.endpoints)
        .collect();
    let at_interface: Vec<&CatalogEndpoint> = all
        .iter()
        .copied()
        .filter(|e| e.interface == interface.as_str())
        .collect();
    let chosen = match region {
        Some(region) => at_interface.iter().find(|e| e.in_region(region)),
        None => {
            let mut regions: Vec<String> = at_interface
                .iter()
                .map(|e| e.region_name().unwrap_or("(none)").to_owned())
                .collect();
            regions.sort();
            regions.dedup();
            if regions.len() > 1 {
                return Err(CloudError::AmbiguousRegion {
                    service: service_type.to_owned(),
                    regions,
                });
            }
            at_interface.first()
        }
    };
    let Some(endpoint) = chosen else {
        return Err(CloudError::NoEndpoint {
            service: service_type.to_owned(),
            interface: interface.as_str().to_owned(),
            region: region.map(str::to_owned),
            available: all
                .iter()
                .map(|e| {
                    format!(
                        "{} {} {}",
                        e.interface,
                        e.region_name().unwrap_or("(no region)"),
                        e.url
                    )
                })
                .collect(),
        });
    };
    Url::parse(&endpoint.url).map_err(|e| CloudError::InvalidResponse {
        url: endpoint.url.clone(),
        problem: format!("the catalog's `{service_type}` endpoint is not a URL ({e})"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Vec<CatalogService> {
        serde_json::from_value(serde_json::json!([
            {"type": "identity", "endpoints": [{"interface": "public", "region_id": "R1", "url": "http://k/v3"}]},
            {"type": "image", "name": "glance", "endpoints": [
                {"interface": "public", "region_id": "R1", "region": "R1", "url": "http://g1"},
                {"interface": "internal", "region_id": "R1", "url": "http://g1-internal"},
                {"interface": "public", "region_id": "R2", "url": "http://g2"}
            ]}
        ]))
        .unwrap()
    }

    #[test]
    fn picks_by_region_and_interface() {
        let c = catalog();
        let pick = |i, r| select_endpoint(&c, "image", i, r).map(|u| u.to_string());
        assert_eq!(pick(Interface::Public, Some("R1")).unwrap(), "http://g1/");
        assert_eq!(pick(Interface::Public, Some("R2")).unwrap(), "http://g2/");
        assert_eq!(
            pick(Interface::Internal, None).unwrap(),
            "http://g1-internal/"
        );
    }

    #[test]
    fn several_regions_without_region_name_is_an_error() {
        let err = select_endpoint(&catalog(), "image", Interface::Public, None).unwrap_err();
        assert!(
            matches!(err, CloudError::AmbiguousRegion { ref regions, .. } if regions == &["R1", "R2"]),
            "{err}"
        );
    }

    #[test]
    fn missing_endpoint_lists_what_exists() {
        let err = select_endpoint(&catalog(), "image", Interface::Admin, Some("R1")).unwrap_err();
        let CloudError::NoEndpoint { available, .. } = &err else {
            panic!("{err}");
        };
        assert_eq!(available.len(), 3);
        assert!(select_endpoint(&catalog(), "volume", Interface::Public, None).is_err());
    }
}
