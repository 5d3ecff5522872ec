//! loom models of the cross-thread protocols in `shards/` live in `tests/`:
//! each runs the production type over loom's atomics through the `shards`
//! traits, so the model checks the code that ships.
