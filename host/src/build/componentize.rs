//! Core wasm module → component, with `wit-component`.

use anyhow::{Context, Result};

/// Turns a core module built by `cargo build --target wasm32-unknown-unknown` (with the
/// component-type custom section wit-bindgen embeds) into a component. Imports the module does
/// not use are left out, so a component only asks for the capabilities it really needs.
pub fn componentize(core: &[u8]) -> Result<Vec<u8>> {
    wit_component::ComponentEncoder::default()
        .module(core)
        .context("reading the core module (was it built with wasmflow-guest-sdk?)")?
        .validate(true)
        .encode()
        .context("encoding the component")
}
