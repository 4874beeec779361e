//! `canary-xds bootstrap`: a ready Envoy bootstrap that points Envoy at canary-xds.

use clap::Args;

/// The flags of `bootstrap`. They describe the Envoy side.
#[derive(Debug, Args)]
pub struct BootstrapArgs {}

/// Renders the bootstrap YAML.
pub fn render(_args: &BootstrapArgs) -> String {
    String::new()
}
