//! The sync pipeline: discovery (what GitHub says now) → change detection
//! (what differs from the stored rows) → synchronization (one transaction),
//! driven per repository by the processor.
//!
//! The traits are the extension points: wrap a [`PrDiscovery`] to filter what
//! is discovered, or a [`ChangeDetector`] / [`Synchronizer`] to add behaviour,
//! and hand the wrappers to [`PrProcessor`]. The detector it is given decides
//! what is written; the synchronizer holds those decisions to the rules
//! ([`forward`]: never backwards; [`versions`]: on rows no one changed since).

pub mod bulk;
pub mod data;
pub mod delivered;
pub mod detect;
pub mod discovery;
pub mod error;
pub mod forward;
pub mod processor;
pub mod survey;
pub mod sync;
pub mod versions;

pub use data::{CheckConclusion, CheckRunData, CheckStatus, PrData, PrState, StatusData};
pub use detect::{
    Cause, ChangeDetector, ChangeKind, ChangeSet, CheckField, CheckRunChangeRecord, DatabaseChangeDetector,
    FieldChange, PrChangeRecord, PrField, RequiredChecks, SnapshotFit, SweepMark,
};
pub use discovery::{Discovered, GitHubPrDiscovery, OpenPrs, PrDiscovery, PrHead, PrLookup, Requirement};
pub use error::{DetectionError, ErrorKind, ProcessingError, SyncError};
pub use processor::{BatchProcessingResult, PrProcessor, ProcessingResult, Target, WorkContext};
pub use sync::{DatabaseSynchronizer, SyncReport, Synchronizer};
pub use versions::{StoredVersions, Versions};
