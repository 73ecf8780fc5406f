//! ESR_EL2 decoding: exception class and ISS fields.
