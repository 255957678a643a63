//! Capabilities backed by external systems.
