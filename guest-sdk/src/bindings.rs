//! Generated bindings for `wit/wasmflow.wit` (the host/guest contract).
//!
//! Operator authors never use these directly; the SDK wraps them. They are public only so the
//! export macros can name them from the author's crate.
#![allow(missing_docs)] // generated code; the WIT file documents the contract

wit_bindgen::generate!({
    path: "../wit",
    world: "operator-module",
    pub_export_macro: true,
    export_macro_name: "__export_operator_module",
    default_bindings_module: "wasmflow_guest_sdk::bindings",
    runtime_path: "wasmflow_guest_sdk::__wit_bindgen::rt",
    additional_derives: [PartialEq, Eq],
});
