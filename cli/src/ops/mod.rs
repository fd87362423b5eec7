//! The pure logic of `flockerctl`'s dataset commands, apart from any I/O so it can be tested on
//! its own: which dataset or node a prefix means, sizes, the rows of a listing, how far a change
//! has come, and aligned tables.

pub mod metadata;
pub mod prefix;
pub mod progress;
pub mod size;
pub mod table;
pub mod view;
