//! LMDB databases of Caffe `Datum` records: reading them in key order (the Data layer, `compute-mean`, labels
//! for `infogain`) and writing new ones (`convert-imageset`).
//!
//! A Caffe LMDB is a folder holding `data.mdb` and `lock.mdb`, with the records in LMDB's unnamed database:
//! keys are byte strings (`convert_imageset` writes `%08d_<path>`), values serialized Datums (see
//! [`super::datum`]). Records are read in key order (LMDB's byte order), as Caffe's cursor reads them, and a
//! reader that reaches the last record wraps around to the first.
//!
//! Reading opens the database read-only, without thread-local reader slots (as Caffe does), so one process
//! may read a database from several threads: [`LmdbReader`]s of the same folder share one environment
//! (`heed`, the LMDB binding, refuses to open a folder twice in a process). Writing ([`LmdbWriter`]) refuses a
//! path that exists, as Caffe's `db::NEW` does, commits every 1000 records, and grows the memory map when it
//! is full (Caffe's LMDB writer does the same).

use std::collections::BTreeMap;
use std::ops::{Bound, ControlFlow};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use heed::types::Bytes;
use heed::{Database, Env, EnvFlags, EnvOpenOptions, MdbError, WithoutTls};

use super::datum;
use super::pixels::{invalid, ColorMode};
use super::transform::Values;
use crate::error::{Error, Result};

/// Records written before each commit.
const COMMIT_EVERY: usize = 1000;

/// The memory map a new database starts with; doubled whenever it fills.
const INITIAL_MAP_SIZE: usize = 64 << 20;

/// The environments open for reading, by canonical folder, shared by every reader of that folder.
static OPEN: Mutex<BTreeMap<PathBuf, Weak<Env<WithoutTls>>>> = Mutex::new(BTreeMap::new());

/// A key as text for messages (keys are text in Caffe's databases; other bytes are shown escaped).
pub fn key_text(key: &[u8]) -> String {
    key.escape_ascii().to_string()
}

/// The key `convert-imageset` gives the image on line `index` (from 0) of its list: `%08d_<path>`.
pub fn image_key(index: usize, path: &str) -> String {
    format!("{index:08}_{path}")
}

/// An LMDB error about the database at `path`.
fn lmdb_error(path: &Path, what: &str, error: heed::Error) -> Error {
    let source = match error {
        heed::Error::Io(e) => e,
        other => std::io::Error::other(format!("{what}: {other}")),
    };
    Error::io(path, source)
}

/// Records (key, value) read in key order inside one read transaction.
type Records<'t> = Box<dyn Iterator<Item = heed::Result<(&'t [u8], &'t [u8])>> + 't>;

/// A database of Datum records open for reading. Cheap to clone; clones share the environment.
#[derive(Clone)]
pub struct LmdbReader {
    path: PathBuf,
    env: Arc<Env<WithoutTls>>,
    db: Database<Bytes, Bytes>,
}

impl std::fmt::Debug for LmdbReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LmdbReader")
            .field("path", &self.path)
            .finish()
    }
}

impl LmdbReader {
    /// Opens the LMDB folder at `path` read-only; an error naming the path when it is missing or not an LMDB.
    pub fn open(path: &Path) -> Result<Self> {
        let canonical = std::fs::canonicalize(path).map_err(|e| Error::io(path, e))?;
        if !canonical.is_dir() || !canonical.join("data.mdb").is_file() {
            return Err(invalid(
                path,
                "not an LMDB database (a folder holding data.mdb)",
            ));
        }
        let env = shared_env(path, &canonical)?;
        let rtxn = env
            .read_txn()
            .map_err(|e| lmdb_error(path, "cannot read", e))?;
        let db = env
            .open_database::<Bytes, Bytes>(&rtxn, None)
            .map_err(|e| lmdb_error(path, "cannot open the records", e))?
            .ok_or_else(|| invalid(path, "the LMDB has no main database"))?;
        rtxn.commit()
            .map_err(|e| lmdb_error(path, "cannot read", e))?;
        Ok(LmdbReader {
            path: path.to_path_buf(),
            env,
            db,
        })
    }

    /// The path the database was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The number of records.
    pub fn len(&self) -> Result<u64> {
        let rtxn = self.read_txn()?;
        self.db
            .len(&rtxn)
            .map_err(|e| lmdb_error(&self.path, "cannot count the records", e))
    }

    /// Whether the database holds no record.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    fn read_txn(&self) -> Result<heed::RoTxn<'_, WithoutTls>> {
        self.env
            .read_txn()
            .map_err(|e| lmdb_error(&self.path, "cannot read", e))
    }

    fn read_error(&self, error: heed::Error) -> Error {
        lmdb_error(&self.path, "cannot read a record", error)
    }

    /// The first record in key order (key, value); None for an empty database.
    pub fn first(&self) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        let rtxn = self.read_txn()?;
        let first = self.db.first(&rtxn).map_err(|e| self.read_error(e))?;
        Ok(first.map(|(k, v)| (k.to_vec(), v.to_vec())))
    }

    /// Runs `visit(value)` on the record of `key`; an error when there is none.
    pub fn visit_key<T>(&self, key: &[u8], visit: impl FnOnce(&[u8]) -> Result<T>) -> Result<T> {
        let rtxn = self.read_txn()?;
        match self.db.get(&rtxn, key).map_err(|e| self.read_error(e))? {
            Some(value) => visit(value),
            None => Err(invalid(
                &self.path,
                format!(
                    "no record \"{}\" (the LMDB changed while it was read?)",
                    key_text(key)
                ),
            )),
        }
    }

    /// Visits every record in key order: `visit(key, value)`, stopping at its first error.
    pub fn for_each(&self, mut visit: impl FnMut(&[u8], &[u8]) -> Result<()>) -> Result<()> {
        let rtxn = self.read_txn()?;
        for item in self.db.iter(&rtxn).map_err(|e| self.read_error(e))? {
            let (key, value) = item.map_err(|e| self.read_error(e))?;
            visit(key, value)?;
        }
        Ok(())
    }

    /// Visits `count` records in key order, starting at the first key ≥ `from` (an empty `from`: the first
    /// record) and wrapping around after the last: `visit(i, key, value)` for i in 0..count. Returns the key
    /// of the record that follows the last one visited (wrapping around), or None when `visit` broke off.
    /// An empty database is an error.
    pub fn visit_from(
        &self,
        from: &[u8],
        count: usize,
        mut visit: impl FnMut(usize, &[u8], &[u8]) -> Result<ControlFlow<()>>,
    ) -> Result<Option<Vec<u8>>> {
        let rtxn = self.read_txn()?;
        let mut records = self.records_from(&rtxn, from)?;
        let mut i = 0;
        loop {
            let item = match records.next() {
                Some(item) => item.map_err(|e| self.read_error(e))?,
                None => {
                    records = self.records_from(&rtxn, &[])?;
                    match records.next() {
                        Some(item) => item.map_err(|e| self.read_error(e))?,
                        None => return Err(invalid(&self.path, "the LMDB holds no record")),
                    }
                }
            };
            let (key, value) = item;
            if i == count {
                return Ok(Some(key.to_vec()));
            }
            if visit(i, key, value)?.is_break() {
                return Ok(None);
            }
            i += 1;
        }
    }

    /// The records from the first key ≥ `from` to the end.
    fn records_from<'t>(
        &self,
        rtxn: &'t heed::RoTxn<'_, WithoutTls>,
        from: &[u8],
    ) -> Result<Records<'t>> {
        let records: Records<'t> = if from.is_empty() {
            Box::new(self.db.iter(rtxn).map_err(|e| self.read_error(e))?)
        } else {
            let range = (Bound::Included(from), Bound::Unbounded);
            Box::new(
                self.db
                    .range(rtxn, &range)
                    .map_err(|e| self.read_error(e))?,
            )
        };
        Ok(records)
    }
}

/// The environment of the LMDB at `canonical`, opened read-only once per process and shared.
fn shared_env(path: &Path, canonical: &Path) -> Result<Arc<Env<WithoutTls>>> {
    let mut open = OPEN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(env) = open.get(canonical).and_then(Weak::upgrade) {
        return Ok(env);
    }
    let options = || {
        let mut options = EnvOpenOptions::new().read_txn_without_tls();
        options.max_readers(1024);
        // SAFETY: READ_ONLY is one of LMDB's safe flags (the unsafe ones are NO_SYNC, NO_META_SYNC, NO_LOCK).
        unsafe { options.flags(EnvFlags::READ_ONLY) };
        options
    };
    // SAFETY: the map is read-only here and LMDB's lock file keeps writers in other processes consistent; the
    // files are not changed by this process while it is mapped (crema writes only new databases).
    let mut opened = unsafe { options().open(canonical) };
    if matches!(opened, Err(heed::Error::EnvAlreadyOpened)) {
        // The last reader of this folder is closing it in another thread: wait for it, then open anew.
        if let Some(closing) = heed::env_closing_event(canonical) {
            closing.wait();
        }
        // SAFETY: as above.
        opened = unsafe { options().open(canonical) };
    }
    let env = Arc::new(opened.map_err(|e| lmdb_error(path, "cannot open the LMDB", e))?);
    open.retain(|_, env| env.strong_count() > 0);
    open.insert(canonical.to_path_buf(), Arc::downgrade(&env));
    Ok(env)
}

/// The label of every record of the LMDB at `path`, in key order, without decoding the images.
///
/// ```no_run
/// let labels = crema::data::lmdb::read_labels("train_lmdb".as_ref())?;
/// println!("{} records", labels.len());
/// # Ok::<(), crema::Error>(())
/// ```
pub fn read_labels(path: &Path) -> Result<Vec<i32>> {
    let reader = LmdbReader::open(path)?;
    let mut labels = Vec::new();
    reader.for_each(|key, value| {
        let datum = datum::parse(value)
            .map_err(|reason| invalid(path, format!("record \"{}\": {reason}", key_text(key))))?;
        labels.push(datum.label());
        Ok(())
    })?;
    Ok(labels)
}

/// The mean of the images of an LMDB, as Caffe's `compute_image_mean` computes it.
#[derive(Debug, Clone, PartialEq)]
pub struct MeanImage {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// C × H × W means, channels first.
    pub values: Vec<f32>,
    /// The number of records averaged.
    pub count: usize,
}

impl MeanImage {
    /// The mean of each channel over its positions (what `compute_image_mean` prints as `mean_value`).
    pub fn channel_means(&self) -> Vec<f64> {
        let plane = self.height * self.width;
        self.values
            .chunks_exact(plane.max(1))
            .map(|c| c.iter().map(|&v| f64::from(v)).sum::<f64>() / plane as f64)
            .collect()
    }

    /// The mean image as Caffe writes it: a BlobProto of `num` 1, `channels`, `height`, `width` and `data`.
    pub fn to_blobproto(&self) -> crema_proto::BlobProto {
        let size = |v: usize| i32::try_from(v).unwrap_or(i32::MAX);
        crema_proto::BlobProto {
            num: Some(1),
            channels: Some(size(self.channels)),
            height: Some(size(self.height)),
            width: Some(size(self.width)),
            data: self.values.clone(),
            ..Default::default()
        }
    }
}

/// The mean image of every record of the LMDB at `path`: encoded records are decoded unchanged, and every
/// record must have the first one's size (errors name the record's key). Sums are kept in f64 (Caffe sums in
/// f32), then divided by the number of records.
pub fn mean_image(path: &Path) -> Result<MeanImage> {
    let reader = LmdbReader::open(path)?;
    let mut sums: Vec<f64> = Vec::new();
    let mut shape = [0usize; 3];
    let mut count = 0usize;
    reader.for_each(|key, value| {
        let fail = |reason: String| invalid(path, format!("record \"{}\": {reason}", key_text(key)));
        let datum = datum::parse(value).map_err(fail)?;
        let pixels = datum::pixels(&datum, ColorMode::Native).map_err(fail)?;
        let view = pixels.view();
        let this = [view.channels, view.height, view.width];
        if count == 0 {
            shape = this;
            sums = crate::memory::zeroed(view.channels * view.height * view.width, || {
                format!("the sums of the mean image of {}", path.display())
            })?;
        } else if this != shape {
            return Err(fail(format!(
                "the image is {} × {} × {} but the first record's is {} × {} × {}; every image needs the same \
                 size for a mean",
                this[0], this[1], this[2], shape[0], shape[1], shape[2]
            )));
        }
        match view.values {
            Values::U8(values) => sums
                .iter_mut()
                .zip(values)
                .for_each(|(s, &v)| *s += f64::from(v)),
            Values::F32(values) => sums
                .iter_mut()
                .zip(values)
                .for_each(|(s, &v)| *s += f64::from(v)),
        }
        count += 1;
        Ok(())
    })?;
    if count == 0 {
        return Err(invalid(path, "the LMDB holds no record to average"));
    }
    Ok(MeanImage {
        channels: shape[0],
        height: shape[1],
        width: shape[2],
        values: sums.iter().map(|&s| (s / count as f64) as f32).collect(),
        count,
    })
}

/// A new LMDB being written. Records are buffered and committed every 1000; [`LmdbWriter::finish`] commits the
/// rest (a writer dropped without `finish` loses the records since the last commit).
pub struct LmdbWriter {
    path: PathBuf,
    env: Env,
    db: Database<Bytes, Bytes>,
    map_size: usize,
    pending: Vec<(Vec<u8>, Vec<u8>)>,
    written: usize,
}

impl LmdbWriter {
    /// Creates the LMDB folder `path`; refuses a path that exists (as Caffe does, to never add to or mix with
    /// an existing database).
    pub fn create(path: &Path) -> Result<Self> {
        Self::create_with_map_size(path, INITIAL_MAP_SIZE)
    }

    /// [`Self::create`] with a first memory map of `map_size` bytes (a multiple of the page size).
    pub(crate) fn create_with_map_size(path: &Path, map_size: usize) -> Result<Self> {
        if path.exists() {
            return Err(Error::io(
                path,
                std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "already exists; give a new path for the database (remove the old one first to replace it)",
                ),
            ));
        }
        std::fs::create_dir_all(path).map_err(|e| Error::io(path, e))?;
        let mut options = EnvOpenOptions::new();
        options.map_size(map_size);
        // SAFETY: a folder this process just created; nothing else maps it.
        let env = unsafe { options.open(path) }
            .map_err(|e| lmdb_error(path, "cannot create the LMDB", e))?;
        let mut wtxn = env
            .write_txn()
            .map_err(|e| lmdb_error(path, "cannot write", e))?;
        let db = env
            .create_database::<Bytes, Bytes>(&mut wtxn, None)
            .map_err(|e| lmdb_error(path, "cannot create the records", e))?;
        wtxn.commit()
            .map_err(|e| lmdb_error(path, "cannot write", e))?;
        Ok(LmdbWriter {
            path: path.to_path_buf(),
            env,
            db,
            map_size,
            pending: Vec::with_capacity(COMMIT_EVERY),
            written: 0,
        })
    }

    /// Adds a record (a key already present is overwritten); commits when 1000 are waiting.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        if key.is_empty() || key.len() > 511 {
            return Err(invalid(
                &self.path,
                format!(
                    "key \"{}\": an LMDB key holds 1 to 511 bytes, this one {}",
                    key_text(key),
                    key.len()
                ),
            ));
        }
        self.pending.push((key.to_vec(), value.to_vec()));
        if self.pending.len() >= COMMIT_EVERY {
            self.commit()?;
        }
        Ok(())
    }

    /// The records committed so far.
    pub fn written(&self) -> usize {
        self.written
    }

    /// Commits the waiting records, growing the map and trying again while it is full.
    pub fn commit(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        loop {
            match self.try_commit() {
                Ok(()) => break,
                Err(heed::Error::Mdb(MdbError::MapFull)) => {
                    let size = self.map_size.checked_mul(2).ok_or_else(|| {
                        invalid(&self.path, "the database outgrew the largest memory map")
                    })?;
                    // SAFETY: no transaction of this environment is open (try_commit's was aborted).
                    unsafe { self.env.resize(size) }
                        .map_err(|e| lmdb_error(&self.path, "cannot grow the map", e))?;
                    self.map_size = size;
                }
                Err(e) => return Err(lmdb_error(&self.path, "cannot write", e)),
            }
        }
        self.written += self.pending.len();
        self.pending.clear();
        Ok(())
    }

    fn try_commit(&self) -> heed::Result<()> {
        let mut wtxn = self.env.write_txn()?;
        for (key, value) in &self.pending {
            self.db.put(&mut wtxn, key, value)?;
        }
        wtxn.commit()
    }

    /// Commits the last records and closes the database; returns how many records were written.
    pub fn finish(mut self) -> Result<usize> {
        self.commit()?;
        self.env
            .force_sync()
            .map_err(|e| lmdb_error(&self.path, "cannot sync", e))?;
        Ok(self.written)
    }
}

/// Test helpers: databases of small datums.
#[cfg(test)]
pub(crate) mod test_db {
    use super::*;
    use prost::Message;

    /// A fresh path (not yet existing) under the temporary folder.
    pub fn fresh(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("crema-lmdb-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        let _ = std::fs::remove_dir_all(&path);
        path
    }

    /// Writes `records` (key, datum) to a new LMDB at `path`.
    pub fn write(path: &Path, records: &[(String, crema_proto::Datum)]) {
        let mut writer = LmdbWriter::create(path).unwrap();
        for (key, datum) in records {
            writer.put(key.as_bytes(), &datum.encode_to_vec()).unwrap();
        }
        writer.finish().unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::test_db::{fresh, write};
    use super::*;
    use crate::data::datum::{encoded_datum, raw_datum};
    use crate::data::pixels::{Encoding, Image};

    fn gray(value: u8, label: i32) -> crema_proto::Datum {
        raw_datum(&Image::new(1, 2, 2, vec![value; 4]).unwrap(), label)
    }

    #[test]
    fn records_come_in_key_order_and_wrap_around() {
        let path = fresh("order");
        // Written out of order: read back sorted by key.
        write(
            &path,
            &[
                ("00000002_c".into(), gray(2, 12)),
                ("00000000_a".into(), gray(0, 10)),
                ("00000001_b".into(), gray(1, 11)),
            ],
        );
        assert_eq!(read_labels(&path).unwrap(), [10, 11, 12]);
        let reader = LmdbReader::open(&path).unwrap();
        assert_eq!(reader.len().unwrap(), 3);
        assert_eq!(reader.first().unwrap().unwrap().0, b"00000000_a");
        let mut keys = Vec::new();
        let next = reader
            .visit_from(b"00000001", 4, |i, key, _| {
                keys.push((i, key_text(key)));
                Ok(ControlFlow::Continue(()))
            })
            .unwrap();
        assert_eq!(
            keys,
            [
                (0, "00000001_b".to_owned()),
                (1, "00000002_c".into()),
                (2, "00000000_a".into()),
                (3, "00000001_b".into())
            ]
        );
        assert_eq!(next.unwrap(), b"00000002_c");
        // From the start, breaking off.
        let next = reader
            .visit_from(b"", 3, |i, _, _| {
                Ok(if i == 1 {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                })
            })
            .unwrap();
        assert_eq!(next, None);
        // Past the last key: from the first.
        let next = reader
            .visit_from(b"zzz", 1, |_, key, _| {
                assert_eq!(key, b"00000000_a");
                Ok(ControlFlow::Continue(()))
            })
            .unwrap();
        assert_eq!(next.unwrap(), b"00000001_b");
        // Two readers of one folder share the environment.
        let again = LmdbReader::open(&path).unwrap();
        assert!(Arc::ptr_eq(&again.env, &reader.env));
    }

    #[test]
    fn existing_paths_are_refused_and_missing_ones_named() {
        let path = fresh("exists");
        write(&path, &[("a".into(), gray(0, 0))]);
        let err = LmdbWriter::create(&path).err().unwrap().to_string();
        assert!(
            err.contains("already exists") && err.contains("exists"),
            "{err}"
        );
        let err = LmdbReader::open(&path.with_file_name("nope")).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
        let folder = fresh("not-lmdb");
        std::fs::create_dir_all(&folder).unwrap();
        let err = LmdbReader::open(&folder).unwrap_err().to_string();
        assert!(err.contains("not an LMDB"), "{err}");
        let mut writer = LmdbWriter::create(&fresh("keys")).unwrap();
        assert!(writer.put(b"", b"x").is_err());
        assert!(writer.put(&[b'k'; 512], b"x").is_err());
    }

    #[test]
    fn an_empty_database_is_an_error_to_read_from() {
        let path = fresh("empty");
        write(&path, &[]);
        let reader = LmdbReader::open(&path).unwrap();
        assert!(reader.is_empty().unwrap());
        let err = reader
            .visit_from(b"", 1, |_, _, _| Ok(ControlFlow::Continue(())))
            .unwrap_err();
        assert!(err.to_string().contains("no record"), "{err}");
        assert!(mean_image(&path)
            .unwrap_err()
            .to_string()
            .contains("no record"));
        assert_eq!(read_labels(&path).unwrap(), Vec::<i32>::new());
    }

    #[test]
    fn the_map_grows_past_its_first_size() {
        let path = fresh("grow");
        let mut writer = LmdbWriter::create_with_map_size(&path, 1 << 20).unwrap();
        // 1100 records of 4 KB: 4.4 MB, past the first 1 MiB map, in two commits.
        let value = vec![7u8; 4000];
        for i in 0..1100 {
            writer.put(image_key(i, "x").as_bytes(), &value).unwrap();
        }
        assert_eq!(writer.finish().unwrap(), 1100);
        assert_eq!(LmdbReader::open(&path).unwrap().len().unwrap(), 1100);
    }

    #[test]
    fn mean_of_raw_and_encoded_records() {
        let path = fresh("mean");
        let a = Image::new(3, 1, 2, vec![0, 10, 20, 30, 40, 50]).unwrap();
        let b = Image::new(3, 1, 2, vec![2, 10, 20, 31, 40, 250]).unwrap();
        write(
            &path,
            &[
                ("0".into(), raw_datum(&a, 0)),
                (
                    "1".into(),
                    encoded_datum(b.encode(Encoding::Png).unwrap(), 1),
                ),
            ],
        );
        let mean = mean_image(&path).unwrap();
        assert_eq!(
            (mean.channels, mean.height, mean.width, mean.count),
            (3, 1, 2, 2)
        );
        assert_eq!(mean.values, [1.0, 10.0, 20.0, 30.5, 40.0, 150.0]);
        assert_eq!(mean.channel_means(), [5.5, 25.25, 95.0]);
        let proto = mean.to_blobproto();
        assert_eq!(
            (proto.num, proto.channels, proto.height, proto.width),
            (Some(1), Some(3), Some(1), Some(2))
        );

        let mixed = fresh("mean-mixed");
        write(
            &mixed,
            &[("0".into(), raw_datum(&a, 0)), ("1".into(), gray(1, 1))],
        );
        let err = mean_image(&mixed).unwrap_err().to_string();
        assert!(
            err.contains("record \"1\"") && err.contains("the same size"),
            "{err}"
        );
    }

    #[test]
    fn corrupt_records_are_errors_naming_the_key() {
        let path = fresh("corrupt");
        let mut writer = LmdbWriter::create(&path).unwrap();
        writer
            .put(
                b"00000000_good",
                &prost::Message::encode_to_vec(&gray(1, 4)),
            )
            .unwrap();
        writer.put(b"00000001_bad", &[0x22, 0x7f, 1, 2]).unwrap();
        writer.finish().unwrap();
        let err = read_labels(&path).unwrap_err().to_string();
        assert!(err.contains("record \"00000001_bad\""), "{err}");
        assert!(err.contains(&path.display().to_string()), "{err}");
    }
}
