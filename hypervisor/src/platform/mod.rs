//! The host device tree read once into a validated `Platform`.
