//! A build's releases on disk: where everything lives (`layout`), the release store and its
//! metadata (`store`), copying and sealing a release (`stage`), rendering settings (`render`),
//! dependencies built once per content (`deps`), the source revision (`git`), the build's secret
//! key (`secret_key`), a hand-made setup's files taken over as a release (`handmade`) and the
//! migrations a release's code knows (`schema`).

pub mod deps;
pub mod git;
pub mod handmade;
pub mod id;
pub mod layout;
pub mod render;
pub mod schema;
pub mod secret_key;
pub mod stage;
pub mod store;
