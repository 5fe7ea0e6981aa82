//! HDF5 sources: the rows of Caffe's HDF5Data layer, from `.h5` files named in a text list.
//!
//! The list (`hdf5_data_param.source`) names one file per line; blank lines and whitespace around a name are
//! ignored. A relative name is taken from the working directory first, as Caffe does, then from the list's own
//! folder; an error names every path tried. Each file holds one dataset per top, named like the top (`data`,
//! `label`, ...). Every dataset of a file has the same number of rows (its first axis), and the shape of one row
//! (the axes after the first) is the same in every file. Integer and floating-point datasets are read and
//! converted to f32, as Caffe's reader converts them to float.
//!
//! [`Hdf5Source::open`] checks every listed file's datasets (their headers only: types and shapes) and reads
//! the first file. From then on one file is held in memory at a time, as in Caffe: batches take the rows of the
//! current file in order, move to the next file at its end and wrap around to the first after the last. With
//! `shuffle`, the order of the files is shuffled at the start of every pass over them, and the order of a file's
//! rows every time reading enters the file, so each pass visits every row exactly once, in a fresh order. The
//! shuffles draw from the generator the source is given (the layer's, derived from the net's seed), so a seed
//! gives the same batches on every run.
//!
//! Where reading stands is an [`Hdf5Position`]: which file, which row, both orders and the generator's state.
//! [`Hdf5Source::position`] and [`Hdf5Source::set_position`] save and restore it exactly, for solverstates.

use std::path::{Path, PathBuf};

use hdf5_reader::error::Error as H5Error;
use hdf5_reader::{Dataset, Datatype, Hdf5File};
use rand::seq::SliceRandom;

use crate::blob::MAX_BLOB_COUNT;
use crate::math::Rng;

/// The most axes a blob may have (Caffe's kMaxBlobAxes).
const MAX_AXES: usize = 32;

/// A problem with an HDF5 source: the message names the list or the `.h5` file, and the dataset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Hdf5Error(pub String);

type Result<T, E = Hdf5Error> = std::result::Result<T, E>;

impl From<crate::memory::AllocError> for Hdf5Error {
    fn from(error: crate::memory::AllocError) -> Self {
        Hdf5Error(error.to_string())
    }
}

fn fail<T>(message: String) -> Result<T> {
    Err(Hdf5Error(message))
}

/// Where an [`Hdf5Source`] stands: the next row it will read, and what decides the rows after it.
///
/// A solverstate saves these five values and gives them back to [`Hdf5Source::set_position`] to resume exactly:
///
/// - `file_order`: the list indices of the files in the order of the current pass; empty means the list's own
///   order (no shuffling).
/// - `file`: the index into that order of the file being read (0 ≤ `file` < number of files).
/// - `row_order`: the order in which the current file's rows are read, a permutation of `0..rows`; empty means
///   `0, 1, 2, ...` (no shuffling).
/// - `row`: the index into that order of the next row to read (0 ≤ `row` < rows of the current file; reading
///   moves on to the next file as soon as a file's last row is read).
/// - `rng`: the generator the next shuffles draw from. A [`Rng`] (ChaCha8) is saved exactly by its
///   `get_seed()`, `get_stream()` and `get_word_pos()`, and rebuilt by `Rng::from_seed(seed)`, then
///   `set_stream(stream)` and `set_word_pos(word_pos)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Hdf5Position {
    file_order: Vec<usize>,
    file: usize,
    row_order: Vec<usize>,
    row: usize,
    rng: Rng,
}

impl Hdf5Position {
    /// A position from its parts (see the type's documentation); [`Hdf5Source::set_position`] checks them.
    pub fn new(
        file_order: Vec<usize>,
        file: usize,
        row_order: Vec<usize>,
        row: usize,
        rng: Rng,
    ) -> Self {
        Hdf5Position {
            file_order,
            file,
            row_order,
            row,
            rng,
        }
    }

    /// The position as bytes, for a solverstate: file order, file, row order, row (little-endian u64 counts and
    /// values), then the generator's state.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        let mut put = |v: usize| bytes.extend_from_slice(&(v as u64).to_le_bytes());
        put(self.file_order.len());
        self.file_order.iter().for_each(|&v| put(v));
        put(self.file);
        put(self.row_order.len());
        self.row_order.iter().for_each(|&v| put(v));
        put(self.row);
        bytes.extend_from_slice(&crate::math::rng_state(&self.rng));
        bytes
    }

    /// A position from [`Hdf5Position::to_bytes`]; None when the bytes are not one (lengths are checked
    /// against the bytes present before anything is allocated).
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let mut at = 0;
        let mut take = |bytes: &[u8]| -> Option<usize> {
            let value = u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?);
            at += 8;
            usize::try_from(value).ok()
        };
        let list =
            |bytes: &[u8], take: &mut dyn FnMut(&[u8]) -> Option<usize>| -> Option<Vec<usize>> {
                let len = take(bytes)?;
                if len > bytes.len() / 8 {
                    return None;
                }
                (0..len).map(|_| take(bytes)).collect()
            };
        let file_order = list(bytes, &mut take)?;
        let file = take(bytes)?;
        let row_order = list(bytes, &mut take)?;
        let row = take(bytes)?;
        let rng = crate::math::rng_from_state(bytes.get(at..)?)?;
        Some(Hdf5Position::new(file_order, file, row_order, row, rng))
    }

    /// The list indices of the files in this pass's order; empty for the list's order.
    pub fn file_order(&self) -> &[usize] {
        &self.file_order
    }

    /// Sets the order of the files in this pass.
    pub fn set_file_order(&mut self, file_order: Vec<usize>) {
        self.file_order = file_order;
    }

    /// The index into [`Self::file_order`] of the file being read.
    pub fn file(&self) -> usize {
        self.file
    }

    /// Sets the index into the file order of the file being read.
    pub fn set_file(&mut self, file: usize) {
        self.file = file;
    }

    /// The order of the current file's rows; empty for `0, 1, 2, ...`.
    pub fn row_order(&self) -> &[usize] {
        &self.row_order
    }

    /// Sets the order of the current file's rows.
    pub fn set_row_order(&mut self, row_order: Vec<usize>) {
        self.row_order = row_order;
    }

    /// The index into [`Self::row_order`] of the next row to read.
    pub fn row(&self) -> usize {
        self.row
    }

    /// Sets the index into the row order of the next row to read.
    pub fn set_row(&mut self, row: usize) {
        self.row = row;
    }

    /// The generator the next shuffles draw from.
    pub fn rng(&self) -> &Rng {
        &self.rng
    }

    /// Sets the generator the next shuffles draw from.
    pub fn set_rng(&mut self, rng: Rng) {
        self.rng = rng;
    }

    /// The list index of the file being read.
    pub fn list_index(&self) -> usize {
        self.file_order.get(self.file).copied().unwrap_or(self.file)
    }
}

/// A listed file, as checked when the source was opened.
#[derive(Debug, Clone)]
struct Listed {
    path: PathBuf,
    rows: usize,
}

/// The file held in memory: its list index and one f32 array per dataset.
struct Loaded {
    index: usize,
    values: Vec<Vec<f32>>,
}

/// Rows from the `.h5` files of a source list, one file in memory at a time. See the module documentation.
pub struct Hdf5Source {
    list: PathBuf,
    files: Vec<Listed>,
    names: Vec<String>,
    /// Per dataset: the shape of one row (the dataset's shape past the first axis).
    row_shapes: Vec<Vec<usize>>,
    /// Per dataset: the values in one row.
    row_lens: Vec<usize>,
    shuffle: bool,
    loaded: Option<Loaded>,
    /// Every file's values (per file, per dataset), when batches are sampled rather than read in turn.
    all: Option<Vec<Vec<Vec<f32>>>>,
    position: Hdf5Position,
    /// Where each row of the last batch came from: (index in the list, row in that file).
    batch_rows: Vec<(usize, usize)>,
}

impl Hdf5Source {
    /// Opens the source list `list`: resolves and checks every listed file's datasets `names`, reads the first
    /// file, and (with `shuffle`) draws the first orders from `rng`.
    pub fn open(list: &Path, names: &[String], shuffle: bool, rng: Rng) -> Result<Self> {
        if names.is_empty() {
            return fail(format!(
                "{}: no dataset names given (each top names a dataset)",
                list.display()
            ));
        }
        let paths = read_list(list)?;
        let mut files = Vec::with_capacity(paths.len());
        let mut row_shapes: Vec<Vec<usize>> = Vec::new();
        for path in paths {
            let (rows, shapes) = scan(&path, names)?;
            if files.is_empty() {
                row_shapes = shapes;
            } else {
                check_row_shapes(&path, names, &shapes, &files[0], &row_shapes)?;
            }
            files.push(Listed { path, rows });
        }
        let row_lens = row_shapes.iter().map(|s| s.iter().product()).collect();
        let mut source = Hdf5Source {
            list: list.to_path_buf(),
            files,
            names: names.to_vec(),
            row_shapes,
            row_lens,
            shuffle,
            loaded: None,
            all: None,
            position: Hdf5Position::new(Vec::new(), 0, Vec::new(), 0, rng),
            batch_rows: Vec::new(),
        };
        if shuffle {
            let mut order: Vec<usize> = (0..source.files.len()).collect();
            order.shuffle(&mut source.position.rng);
            source.position.file_order = order;
            source.position.row_order = source.new_row_order()?;
        }
        source.load_current()?;
        Ok(source)
    }

    /// The source list this source was opened from.
    pub fn list_path(&self) -> &Path {
        &self.list
    }

    /// The listed files, resolved, in the list's order.
    pub fn file_paths(&self) -> impl Iterator<Item = &Path> {
        self.files.iter().map(|f| f.path.as_path())
    }

    /// How many files the list names.
    pub fn num_files(&self) -> usize {
        self.files.len()
    }

    /// The number of rows of the file at list index `index`.
    pub fn rows(&self, index: usize) -> usize {
        self.files[index].rows
    }

    /// The number of rows of all files together: the rows of one pass.
    pub fn total_rows(&self) -> usize {
        self.files.iter().map(|f| f.rows).sum()
    }

    /// The dataset names, one per top.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The shape of one row of dataset `index` (its shape past the first axis; empty for a 1-D dataset).
    pub fn row_shape(&self, index: usize) -> &[usize] {
        &self.row_shapes[index]
    }

    /// Whether files and rows are shuffled.
    pub fn shuffle(&self) -> bool {
        self.shuffle
    }

    /// Where reading stands; give it to [`Self::set_position`] to come back here.
    pub fn position(&self) -> &Hdf5Position {
        &self.position
    }

    /// Moves reading to `position` (saved from a source over the same files), after checking that it fits these
    /// files: orders that are permutations (or empty), a file index and a row inside them. The file it points
    /// into is read at the next batch.
    pub fn set_position(&mut self, position: Hdf5Position) -> Result<()> {
        let n = self.files.len();
        let what = format!("{}: reading position", self.list.display());
        if !position.file_order.is_empty() && !is_permutation(&position.file_order, n) {
            return fail(format!(
                "{what}: the file order is not an order of the {n} listed files"
            ));
        }
        if position.file >= n {
            return fail(format!(
                "{what}: file {} is past the {n} listed files",
                position.file
            ));
        }
        let listed = &self.files[position.list_index()];
        let rows = listed.rows;
        if !position.row_order.is_empty() && !is_permutation(&position.row_order, rows) {
            return fail(format!(
                "{what}: the row order is not an order of the {rows} rows of {}",
                listed.path.display()
            ));
        }
        if position.row >= rows {
            return fail(format!(
                "{what}: row {} is past the {rows} rows of {}",
                position.row,
                listed.path.display()
            ));
        }
        self.position = position;
        Ok(())
    }

    /// Fills `outputs` with the next `batch_size` rows: `outputs[i]` receives dataset `i`, and holds
    /// `batch_size` times its row's values. Moves to the next file (reading it) when one ends, and wraps around.
    pub fn next_batch(&mut self, batch_size: usize, outputs: &mut [&mut [f32]]) -> Result<()> {
        self.check_outputs(batch_size, outputs)?;
        let mut filled = 0;
        self.batch_rows.clear();
        while filled < batch_size {
            self.load_current()?;
            let list_index = self.position.list_index();
            let rows = self.files[list_index].rows;
            let take = (batch_size - filled).min(rows - self.position.row);
            if let Some(loaded) = &self.loaded {
                let (start, order) = (self.position.row, &self.position.row_order);
                self.batch_rows.extend((start..start + take).map(|k| {
                    let row = if order.is_empty() { k } else { order[k] };
                    (list_index, row)
                }));
                for ((out, values), &len) in
                    outputs.iter_mut().zip(&loaded.values).zip(&self.row_lens)
                {
                    let dst = &mut out[filled * len..(filled + take) * len];
                    if order.is_empty() {
                        dst.copy_from_slice(&values[start * len..(start + take) * len]);
                    } else {
                        for (row, &from) in dst.chunks_exact_mut(len.max(1)).zip(&order[start..]) {
                            row.copy_from_slice(&values[from * len..(from + 1) * len]);
                        }
                    }
                }
            }
            filled += take;
            self.position.row += take;
            if self.position.row == rows {
                self.next_file()?;
            }
        }
        Ok(())
    }

    /// Where value `index` of output `dataset` of the last batch was read: `train.h5, dataset "label", row 1031`
    /// (rows counted from 0, as h5py indexes them).
    pub fn batch_value_origin(&self, dataset: usize, index: usize) -> Option<String> {
        let len = self.row_lens.get(dataset)?.max(&1);
        let &(file, row) = self.batch_rows.get(index / len)?;
        Some(format!(
            "{}, dataset \"{}\", row {row}",
            self.files[file].path.display(),
            self.names[dataset]
        ))
    }

    /// Moves to the first row of the next file, wrapping around (and reshuffling the files) after the last.
    fn next_file(&mut self) -> Result<()> {
        let position = &mut self.position;
        position.row = 0;
        position.file += 1;
        if position.file == self.files.len() {
            position.file = 0;
            if self.shuffle {
                if position.file_order.is_empty() {
                    position.file_order = (0..self.files.len()).collect();
                }
                position.file_order.shuffle(&mut position.rng);
            }
        }
        self.position.row_order = self.new_row_order()?;
        Ok(())
    }

    /// The row order for entering the current file: shuffled with `shuffle`, else the natural one (empty).
    fn new_row_order(&mut self) -> Result<Vec<usize>> {
        if !self.shuffle {
            return Ok(Vec::new());
        }
        let listed = &self.files[self.position.list_index()];
        let mut order = crate::memory::collect(0..listed.rows, listed.rows, || {
            format!("the shuffled row order of {}", listed.path.display())
        })?;
        order.shuffle(&mut self.position.rng);
        Ok(order)
    }

    /// Reads the current file unless it is the one in memory (dropping that one first).
    fn load_current(&mut self) -> Result<()> {
        let index = self.position.list_index();
        if self.loaded.as_ref().is_some_and(|l| l.index == index) {
            return Ok(());
        }
        self.loaded = None;
        let values = self.read_file(index)?;
        self.loaded = Some(Loaded { index, values });
        Ok(())
    }

    /// Reads every listed file into memory, for sampled reading ([`Self::fill_rows`]: rows are drawn from
    /// anywhere), and returns dataset `label`'s value of every row, files in list order: the classes a sampler
    /// draws from. Each row of `label` must hold one value.
    pub fn load_all(&mut self, label: usize) -> Result<Vec<f64>> {
        if self.row_lens.get(label) != Some(&1) {
            return fail(format!(
                "{}: dataset \"{}\" holds {} values a row; the classes to sample by need one",
                self.list.display(),
                self.names.get(label).map_or("", String::as_str),
                self.row_lens.get(label).copied().unwrap_or(0)
            ));
        }
        let mut all = Vec::with_capacity(self.files.len());
        let mut labels = Vec::new();
        for index in 0..self.files.len() {
            let values = self.read_file(index)?;
            labels.extend(values[label].iter().map(|&v| f64::from(v)));
            all.push(values);
        }
        self.all = Some(all);
        Ok(labels)
    }

    /// Fills `outputs` (as [`Self::next_batch`]) with the rows `items`, numbered across all files in list order,
    /// after [`Self::load_all`].
    pub fn fill_rows(&mut self, items: &[usize], outputs: &mut [&mut [f32]]) -> Result<()> {
        self.check_outputs(items.len(), outputs)?;
        let Some(all) = &self.all else {
            return fail(format!(
                "{}: rows asked for before loading them all",
                self.list.display()
            ));
        };
        self.batch_rows.clear();
        for (place, &item) in items.iter().enumerate() {
            let (mut file, mut row) = (0, item);
            while file < self.files.len() && row >= self.files[file].rows {
                row -= self.files[file].rows;
                file += 1;
            }
            if file == self.files.len() {
                return fail(format!(
                    "{}: row {item} is past the listed rows",
                    self.list.display()
                ));
            }
            self.batch_rows.push((file, row));
            for ((out, values), &len) in outputs.iter_mut().zip(&all[file]).zip(&self.row_lens) {
                out[place * len..(place + 1) * len]
                    .copy_from_slice(&values[row * len..(row + 1) * len]);
            }
        }
        Ok(())
    }

    /// An error unless `outputs` are one per dataset, each holding `batch_size` rows.
    fn check_outputs(&self, batch_size: usize, outputs: &[&mut [f32]]) -> Result<()> {
        if outputs.len() != self.names.len() {
            return fail(format!(
                "{}: {} outputs given for {} datasets",
                self.list.display(),
                outputs.len(),
                self.names.len()
            ));
        }
        for (i, out) in outputs.iter().enumerate() {
            if Some(out.len()) != batch_size.checked_mul(self.row_lens[i]) {
                return fail(format!(
                    "{}: the output for dataset \"{}\" holds {} values, not {batch_size} rows of {}",
                    self.list.display(),
                    self.names[i],
                    out.len(),
                    self.row_lens[i]
                ));
            }
        }
        Ok(())
    }

    /// Every dataset's values in listed file `index`, checked against the shapes seen at opening.
    fn read_file(&self, index: usize) -> Result<Vec<Vec<f32>>> {
        let listed = &self.files[index];
        let file = open_file(&listed.path)?;
        let mut values = Vec::with_capacity(self.names.len());
        for (i, name) in self.names.iter().enumerate() {
            let (dataset, dims) = find_dataset(&file, &listed.path, name)?;
            if dims[0] != listed.rows || dims[1..] != self.row_shapes[i][..] {
                return fail(format!(
                    "{}: dataset \"{name}\" has shape {dims:?}, but had {:?} when the source list {} was \
                     opened; the file changed",
                    listed.path.display(),
                    [&[listed.rows][..], &self.row_shapes[i]].concat(),
                    self.list.display()
                ));
            }
            let data = read_f32(&dataset, &listed.path, name)?;
            if data.len() != listed.rows * self.row_lens[i] {
                return fail(format!(
                    "{}: dataset \"{name}\" gave {} values for its shape {dims:?}",
                    listed.path.display(),
                    data.len()
                ));
            }
            if let Some(at) = data.iter().position(|v| !v.is_finite()) {
                let len = self.row_lens[i].max(1);
                return fail(format!(
                    "{}: dataset \"{name}\", row {} (value {} of the row) is {} as a 32-bit float: a net cannot \
                     learn from it",
                    listed.path.display(),
                    at / len,
                    at % len,
                    data[at]
                ));
            }
            values.push(data);
        }
        Ok(values)
    }
}

/// Every value of dataset `name` in one `.h5` file, read whole (as f32), with the dataset's shape.
pub fn read_dataset(path: &Path, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
    let file = open_file(path)?;
    let (dataset, dims) = find_dataset(&file, path, name)?;
    let values = read_f32(&dataset, path, name)?;
    if values.len() != dims.iter().product::<usize>() {
        return fail(format!(
            "{}: dataset \"{name}\" gave {} values for its shape {dims:?}",
            path.display(),
            values.len()
        ));
    }
    Ok((dims, values))
}

/// The `.h5` files a source list names, in its order, each found as [`Hdf5Source::open`] finds them.
pub fn list_files(list: &Path) -> Result<Vec<PathBuf>> {
    read_list(list)
}

/// Whether `order` holds each of `0..n` exactly once.
fn is_permutation(order: &[usize], n: usize) -> bool {
    if order.len() != n {
        return false;
    }
    let mut seen = vec![false; n];
    order
        .iter()
        .all(|&i| i < n && !std::mem::replace(&mut seen[i], true))
}

/// The files the list names, resolved (see the module documentation).
fn read_list(list: &Path) -> Result<Vec<PathBuf>> {
    let text = crema_proto::files::read_text_file(list, "HDF5 source list")
        .map_err(|e| Hdf5Error(format!("cannot read the HDF5 source list: {e}")))?;
    let folder = list.parent().unwrap_or(Path::new(""));
    let mut paths = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let name = line.trim();
        if name.is_empty() {
            continue;
        }
        let given = PathBuf::from(name);
        let mut tried = vec![given.clone()];
        if given.is_relative() {
            let beside = folder.join(&given);
            if beside != given {
                tried.push(beside);
            }
        }
        match tried.iter().find(|p| p.exists()) {
            Some(found) => paths.push(found.clone()),
            None => {
                let tried: Vec<String> = tried.iter().map(|p| p.display().to_string()).collect();
                let cwd = std::env::current_dir()
                    .map_or_else(|_| "?".to_owned(), |d| d.display().to_string());
                return fail(format!(
                    "{}:{}: HDF5 file \"{name}\" not found (tried {}; the working directory is {cwd})",
                    list.display(),
                    number + 1,
                    tried.join(", ")
                ));
            }
        }
    }
    if paths.is_empty() {
        return fail(format!(
            "{}: the HDF5 source list names no file",
            list.display()
        ));
    }
    Ok(paths)
}

fn open_file(path: &Path) -> Result<Hdf5File> {
    crema_proto::files::regular_file_size(path).map_err(|e| Hdf5Error(e.to_string()))?;
    Hdf5File::open(path).map_err(|e| {
        Hdf5Error(format!(
            "{}: cannot open it as an HDF5 file: {}",
            path.display(),
            root_cause(&e)
        ))
    })
}

/// The error under hdf5-reader's layers of context (which repeat the dataset's name).
fn root_cause(error: &H5Error) -> &H5Error {
    match error {
        H5Error::Context { source, .. } => root_cause(source),
        other => other,
    }
}

/// Checks the datasets `names` of the file at `path` without reading their values: the number of rows they
/// share, and the shape of one row of each.
fn scan(path: &Path, names: &[String]) -> Result<(usize, Vec<Vec<usize>>)> {
    let file = open_file(path)?;
    let mut rows = 0;
    let mut shapes = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let (dataset, dims) = find_dataset(&file, path, name)?;
        check_extent(&dataset, path, name)?;
        if i == 0 {
            rows = dims[0];
            if rows == 0 {
                return fail(format!(
                    "{}: dataset \"{name}\" has no rows (shape {dims:?})",
                    path.display()
                ));
            }
        } else if dims[0] != rows {
            return fail(format!(
                "{}: dataset \"{name}\" has {} rows but \"{}\" has {rows}; every dataset of a file needs the same \
                 number of rows (first axis)",
                path.display(),
                dims[0],
                names[0]
            ));
        }
        shapes.push(dims[1..].to_vec());
    }
    Ok((rows, shapes))
}

/// Checks that the rows of the file at `path` have the shapes of the first file's.
fn check_row_shapes(
    path: &Path,
    names: &[String],
    shapes: &[Vec<usize>],
    first: &Listed,
    first_shapes: &[Vec<usize>],
) -> Result<()> {
    for ((name, shape), expected) in names.iter().zip(shapes).zip(first_shapes) {
        if shape != expected {
            return fail(format!(
                "{}: the rows of dataset \"{name}\" have shape {shape:?} but those of {} have {expected:?}; \
                 every file needs the same shape past the first axis",
                path.display(),
                first.path.display()
            ));
        }
    }
    Ok(())
}

/// The dataset `name` of `file` and its dimensions, checked: present, numeric, 1 to 32 axes, at most
/// [`MAX_BLOB_COUNT`] values.
fn find_dataset(file: &Hdf5File, path: &Path, name: &str) -> Result<(Dataset, Vec<usize>)> {
    let dataset = file.dataset(name).map_err(|e| {
        let cause = root_cause(&e);
        if !matches!(
            cause,
            H5Error::DatasetNotFound(_) | H5Error::GroupNotFound(_)
        ) {
            return Hdf5Error(format!(
                "{}: cannot read dataset \"{name}\": {cause}",
                path.display()
            ));
        }
        let present = file
            .root_group()
            .and_then(|root| root.member_names())
            .map(|(_, datasets)| datasets);
        let detail = match present {
            Ok(names) if names.is_empty() => "the file has no dataset at its root".to_owned(),
            Ok(names) => format!("the file has: {}", names.join(", ")),
            Err(_) => cause.to_string(),
        };
        Hdf5Error(format!(
            "{}: no dataset \"{name}\" ({detail}); each top of HDF5Data names a dataset",
            path.display()
        ))
    })?;
    let at = || format!("{}: dataset \"{name}\"", path.display());
    if let Some(kind) = unsupported_kind(dataset.dtype()) {
        return fail(format!(
            "{}: holds {kind}; HDF5Data reads integer and floating-point datasets",
            at()
        ));
    }
    let dims = dataset
        .shape()
        .iter()
        .map(|&d| usize::try_from(d).ok())
        .collect::<Option<Vec<usize>>>()
        .ok_or_else(|| {
            Hdf5Error(format!(
                "{}: shape {:?} is too large",
                at(),
                dataset.shape()
            ))
        })?;
    if dims.is_empty() || dims.len() > MAX_AXES {
        return fail(format!(
            "{}: has {} axes; HDF5Data needs 1 to {MAX_AXES} (the first one counts rows)",
            at(),
            dims.len()
        ));
    }
    let count = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    if count.is_none_or(|c| c > MAX_BLOB_COUNT) {
        return fail(format!(
            "{}: shape {dims:?} holds more than {MAX_BLOB_COUNT} values",
            at()
        ));
    }
    Ok((dataset, dims))
}

/// What a dataset of type `dtype` holds, when it is not a number type HDF5Data reads.
fn unsupported_kind(dtype: &Datatype) -> Option<String> {
    match dtype {
        Datatype::FloatingPoint { size: 4 | 8, .. }
        | Datatype::FixedPoint {
            size: 1 | 2 | 4 | 8,
            ..
        } => None,
        Datatype::FloatingPoint { size, .. } => {
            Some(format!("{}-bit floats", u32::from(*size) * 8))
        }
        Datatype::FixedPoint { size, .. } => Some(format!("{}-bit integers", u32::from(*size) * 8)),
        Datatype::String { .. } => Some("strings".into()),
        Datatype::Compound { .. } => Some("compound values".into()),
        Datatype::Array { .. } => Some("array values".into()),
        Datatype::Enum { .. } => Some("enum values (h5py stores booleans as enums)".into()),
        Datatype::VarLen { .. } => Some("variable-length values".into()),
        Datatype::Opaque { .. } => Some("opaque values".into()),
        Datatype::Reference { .. } => Some("references".into()),
        Datatype::Bitfield { .. } => Some("bitfields".into()),
    }
}

/// How many times its stored size a chunked dataset may decode to: deflate, the filter h5py and Caffe use,
/// expands at most about 1032 times; anything claiming more was not written by a compressor.
const MAX_EXPANSION: u64 = 1100;

/// The values a dataset declares and the bytes of each, checked against what its file can hold: a contiguous
/// or compact dataset's bytes must fit in the file, a chunked one's within [`MAX_EXPANSION`] times the file.
/// Every size taken from a dataset's header goes through this before anything is allocated for it.
fn check_extent(dataset: &Dataset, path: &Path, name: &str) -> Result<(usize, usize)> {
    let at = || format!("{}: dataset \"{name}\"", path.display());
    let h5 = |e: H5Error| {
        Hdf5Error(format!(
            "{}: cannot read its header: {}",
            at(),
            root_cause(&e)
        ))
    };
    let count = usize::try_from(dataset.num_elements().map_err(h5)?)
        .map_err(|_| Hdf5Error(format!("{}: too many values", at())))?;
    let item = dataset.raw_element_size().map_err(h5)?;
    let bytes = (count as u128) * (item as u128);
    let file_bytes = std::fs::metadata(path).map_or(0, |m| m.len());
    let chunked = dataset.chunks().is_some();
    let room = u128::from(file_bytes)
        * if chunked {
            u128::from(MAX_EXPANSION)
        } else {
            1
        };
    if bytes > room {
        let held = if chunked {
            format!(
                "more than a file of {file_bytes} bytes can hold even compressed (at most {MAX_EXPANSION} times \
                 its size)"
            )
        } else {
            format!("but the file has only {file_bytes} bytes")
        };
        return fail(format!(
            "{}: declares {count} values of {item} bytes, {}, {held}; the file is damaged or its data was never \
             written",
            at(),
            crate::memory::describe_bytes(bytes)
        ));
    }
    Ok((count, item))
}

/// All values of dataset `name` of the file at `path`, converted to f32 (in C order).
///
/// The declared extent is checked against what the file can hold before anything is allocated: a contiguous or
/// compact dataset's bytes must fit in the file, a chunked one's within [`MAX_EXPANSION`] times the file. The
/// buffers are allocated fallibly, and chunks decode into them (each chunk bounded by the reader's chunk limit).
fn read_f32(dataset: &Dataset, path: &Path, name: &str) -> Result<Vec<f32>> {
    let at = || format!("{}: dataset \"{name}\"", path.display());
    let h5 = |e: H5Error| {
        Hdf5Error(format!(
            "{}: cannot read the values: {}",
            at(),
            root_cause(&e)
        ))
    };
    let (count, item) = check_extent(dataset, path, name)?;
    let what = || format!("the values of {}", at());
    if matches!(dataset.dtype(), Datatype::FloatingPoint { size: 4, .. }) {
        let mut values = crate::memory::zeroed::<f32>(count, what)?;
        dataset.read_into(&mut values).map_err(h5)?;
        return Ok(values);
    }
    // Other types: the stored bytes (native byte order) into one buffer, then converted.
    let mut raw = crate::memory::zeroed::<u8>(count * item, what)?;
    dataset.read_native_bytes_into(&mut raw).map_err(h5)?;
    let mut values = Vec::new();
    crate::memory::reserve(&mut values, count, what)?;
    fn convert<const N: usize>(raw: &[u8], out: &mut Vec<f32>, to_f32: fn([u8; N]) -> f32) {
        out.extend(
            raw.chunks_exact(N)
                .map(|b| to_f32(b.try_into().expect("chunks_exact gives N bytes"))),
        );
    }
    match *dataset.dtype() {
        Datatype::FloatingPoint { size: 8, .. } => {
            convert::<8>(&raw, &mut values, |b| f64::from_ne_bytes(b) as f32)
        }
        Datatype::FixedPoint { size, signed, .. } => match (size, signed) {
            (1, true) => convert::<1>(&raw, &mut values, |b| f32::from(i8::from_ne_bytes(b))),
            (1, false) => convert::<1>(&raw, &mut values, |b| f32::from(b[0])),
            (2, true) => convert::<2>(&raw, &mut values, |b| f32::from(i16::from_ne_bytes(b))),
            (2, false) => convert::<2>(&raw, &mut values, |b| f32::from(u16::from_ne_bytes(b))),
            (4, true) => convert::<4>(&raw, &mut values, |b| i32::from_ne_bytes(b) as f32),
            (4, false) => convert::<4>(&raw, &mut values, |b| u32::from_ne_bytes(b) as f32),
            (8, true) => convert::<8>(&raw, &mut values, |b| i64::from_ne_bytes(b) as f32),
            (8, false) => convert::<8>(&raw, &mut values, |b| u64::from_ne_bytes(b) as f32),
            _ => return fail(format!("{}: holds {size}-byte integers", at())),
        },
        ref other => return fail(format!("{}: holds {other:?}, not numbers", at())),
    }
    Ok(values)
}

/// Writing the small HDF5 files the tests read (with hdf5-writer, a dev-dependency).
#[cfg(test)]
pub(crate) mod test_files {
    use std::path::{Path, PathBuf};

    use hdf5_writer::{DatasetBuilder, Hdf5Builder, WriteOptions};

    /// A fresh, empty folder for the test `name`.
    pub fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("crema-hdf5-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Writes an HDF5 file holding `datasets` at `path`.
    pub fn write(path: &Path, datasets: Vec<DatasetBuilder>) {
        let builder = datasets
            .into_iter()
            .fold(Hdf5Builder::new(), |b, d| b.dataset(d));
        let bytes = builder
            .into_plan()
            .unwrap()
            .encode(WriteOptions::default())
            .unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    /// An f32 dataset.
    pub fn f32s(name: &str, shape: &[u64], values: &[f32]) -> DatasetBuilder {
        DatasetBuilder::typed_data::<f32>(name, shape.to_vec(), values).unwrap()
    }

    /// `dir/name` with `rows` rows numbered `id = base + row`: `data` [rows, 2] holds `(id, -id)` and `label`
    /// [rows] holds `id`.
    pub fn numbered(dir: &Path, name: &str, base: usize, rows: usize) -> PathBuf {
        let ids: Vec<f32> = (base..base + rows).map(|i| i as f32).collect();
        let data: Vec<f32> = ids.iter().flat_map(|&i| [i, -i]).collect();
        let path = dir.join(name);
        let rows = rows as u64;
        write(
            &path,
            vec![
                f32s("data", &[rows, 2], &data),
                f32s("label", &[rows], &ids),
            ],
        );
        path
    }

    /// Writes the source list `dir/name` with these lines.
    pub fn list(dir: &Path, name: &str, lines: &[&str]) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, lines.join("\n")).unwrap();
        path
    }
}

#[cfg(test)]
mod tests {
    use hdf5_writer::{ByteOrder, DatasetBuilder, Hdf5Builder, WriteOptions};

    use super::test_files::{f32s, list, numbered, temp_dir, write};
    use super::*;
    use crate::math::rng;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn open(list: &Path, shuffle: bool, seed: u64) -> Result<Hdf5Source> {
        Hdf5Source::open(list, &names(&["data", "label"]), shuffle, rng(seed, 0))
    }

    /// The next batch of `data` and `label`.
    fn batch(source: &mut Hdf5Source, size: usize) -> (Vec<f32>, Vec<f32>) {
        let (mut data, mut label) = (vec![0.0; size * 2], vec![0.0; size]);
        source
            .next_batch(size, &mut [&mut data, &mut label])
            .unwrap();
        (data, label)
    }

    /// The labels (row ids) of the next `n` batches of `size`.
    fn ids(source: &mut Hdf5Source, size: usize, n: usize) -> Vec<f32> {
        (0..n).flat_map(|_| batch(source, size).1).collect()
    }

    /// Three files of 3, 5 and 4 rows numbered from 0, 100 and 200, and their list.
    fn three_files(test: &str) -> PathBuf {
        let dir = temp_dir(test);
        numbered(&dir, "a.h5", 0, 3);
        numbered(&dir, "b.h5", 100, 5);
        numbered(&dir, "c.h5", 200, 4);
        list(&dir, "list.txt", &["a.h5", "", "  b.h5  ", "c.h5", ""])
    }

    #[test]
    fn batches_cross_files_and_wrap_around() {
        let dir = temp_dir("wrap");
        numbered(&dir, "a.h5", 0, 3);
        numbered(&dir, "b.h5", 100, 5);
        let list = list(&dir, "list.txt", &["a.h5", "b.h5"]);
        let mut source = open(&list, false, 1).unwrap();
        assert_eq!(source.num_files(), 2);
        assert_eq!(source.total_rows(), 8);
        assert_eq!(
            (source.row_shape(0), source.row_shape(1)),
            (&[2][..], &[][..])
        );
        let (data, label) = batch(&mut source, 4);
        assert_eq!(label, [0.0, 1.0, 2.0, 100.0]);
        assert_eq!(data, [0.0, -0.0, 1.0, -1.0, 2.0, -2.0, 100.0, -100.0]);
        assert_eq!(batch(&mut source, 4).1, [101.0, 102.0, 103.0, 104.0]);
        // Past the last file, back to the first.
        assert_eq!(batch(&mut source, 4).1, [0.0, 1.0, 2.0, 100.0]);
        // A batch longer than all files together wraps within itself.
        assert_eq!(
            batch(&mut source, 11).1,
            [101.0, 102.0, 103.0, 104.0, 0.0, 1.0, 2.0, 100.0, 101.0, 102.0, 103.0]
        );
        assert_eq!(
            (source.position().list_index(), source.position().row()),
            (1, 4)
        );
    }

    #[test]
    fn one_file_wraps_onto_itself() {
        let dir = temp_dir("one");
        numbered(&dir, "a.h5", 0, 3);
        let list = list(&dir, "list.txt", &["a.h5"]);
        let mut source = open(&list, false, 1).unwrap();
        assert_eq!(
            ids(&mut source, 2, 4),
            [0.0, 1.0, 2.0, 0.0, 1.0, 2.0, 0.0, 1.0]
        );
    }

    /// Splits ids read in passes of `total` rows, checking that each pass visits every row once, and that the
    /// rows of a file come together (one file at a time).
    fn passes(ids: &[f32], total: usize, files: usize) -> Vec<Vec<f32>> {
        let mut all: Vec<f32> = [0, 1, 2, 100, 101, 102, 103, 104, 200, 201, 202, 203]
            .iter()
            .map(|&i| i as f32)
            .collect();
        all.sort_by(f32::total_cmp);
        ids.chunks(total)
            .map(|pass| {
                let mut sorted = pass.to_vec();
                sorted.sort_by(f32::total_cmp);
                assert_eq!(sorted, all, "a pass must visit every row once: {pass:?}");
                let runs = 1 + pass
                    .windows(2)
                    .filter(|w| (w[0] / 100.0).floor() != (w[1] / 100.0).floor())
                    .count();
                assert_eq!(runs, files, "one file at a time: {pass:?}");
                pass.to_vec()
            })
            .collect()
    }

    #[test]
    fn shuffle_is_deterministic_per_seed_and_visits_every_row_once_per_pass() {
        let list = three_files("shuffle");
        // 9 batches of 4 rows: 3 passes of 12 rows, batches crossing file boundaries.
        let first = ids(&mut open(&list, true, 7).unwrap(), 4, 9);
        let again = ids(&mut open(&list, true, 7).unwrap(), 4, 9);
        let other = ids(&mut open(&list, true, 8).unwrap(), 4, 9);
        assert_eq!(first, again);
        assert_ne!(first, other);
        let p = passes(&first, 12, 3);
        passes(&other, 12, 3);
        // Reshuffled at each pass, and not the list's order.
        assert!(p[0] != p[1] && p[1] != p[2], "{p:?}");
        let plain = ids(&mut open(&list, false, 7).unwrap(), 4, 3);
        assert_ne!(p[0], plain);
        assert_eq!(
            plain,
            [0.0, 1.0, 2.0, 100.0, 101.0, 102.0, 103.0, 104.0, 200.0, 201.0, 202.0, 203.0]
        );
    }

    #[test]
    fn one_file_shuffled_reshuffles_at_each_pass() {
        let dir = temp_dir("one-shuffled");
        numbered(&dir, "a.h5", 0, 20);
        let list = list(&dir, "list.txt", &["a.h5"]);
        let mut source = open(&list, true, 3).unwrap();
        let a = ids(&mut source, 20, 1);
        let b = ids(&mut source, 20, 1);
        assert_ne!(a, b);
        for pass in [&a, &b] {
            let mut sorted = pass.clone();
            sorted.sort_by(f32::total_cmp);
            assert_eq!(sorted, (0..20).map(|i| i as f32).collect::<Vec<_>>());
        }
    }

    #[test]
    fn non_finite_values_are_named_with_file_dataset_and_row() {
        let dir = temp_dir("non-finite");
        let path = dir.join("nan.h5");
        write(
            &path,
            vec![
                f32s("data", &[3, 2], &[0.0, 1.0, 2.0, 3.0, 4.0, f32::NAN]),
                f32s("label", &[3], &[0.0, 1.0, 2.0]),
            ],
        );
        let big = dir.join("big.h5");
        write(
            &big,
            vec![
                f32s("data", &[2, 2], &[0.0, 1.0, 2.0, 3.0]),
                DatasetBuilder::typed_data::<f64>("label", vec![2], &[1.0, 1e40]).unwrap(),
            ],
        );
        let err = open_err(&list(&dir, "nan.txt", &["nan.h5"]), &["data", "label"]);
        assert!(
            err.ends_with("nan.h5: dataset \"data\", row 2 (value 1 of the row) is NaN as a 32-bit float: a net cannot learn from it"),
            "{err}"
        );
        let err = open_err(&list(&dir, "big.txt", &["big.h5"]), &["data", "label"]);
        assert!(err.ends_with("big.h5: dataset \"label\", row 1 (value 0 of the row) is inf as a 32-bit float: a net cannot learn from it"), "{err}");
    }

    #[test]
    fn f64_and_integer_datasets_are_converted() {
        let dir = temp_dir("types");
        let data = [0.1f64, -2.5, 1e30, 3.0, 1.0 / 3.0, -0.0];
        let labels = [1i64 << 40, -7, 3];
        let path = dir.join("t.h5");
        write(
            &path,
            vec![
                DatasetBuilder::typed_data::<f64>("data", vec![3, 2], &data).unwrap(),
                DatasetBuilder::typed_data::<i64>("label", vec![3], &labels).unwrap(),
                DatasetBuilder::typed_data::<u8>("u8", vec![3], &[0u8, 200, 255]).unwrap(),
                DatasetBuilder::typed_data::<i16>("i16", vec![3], &[-300i16, 0, 7]).unwrap(),
                DatasetBuilder::typed_data::<u32>("u32", vec![3], &[4_000_000_000u32, 1, 2])
                    .unwrap(),
            ],
        );
        let list_path = list(&dir, "list.txt", &[path.to_str().unwrap()]);
        let all = names(&["data", "label", "u8", "i16", "u32"]);
        let mut source = Hdf5Source::open(&list_path, &all, false, rng(1, 0)).unwrap();
        let mut out: Vec<Vec<f32>> = vec![vec![0.0; 6], vec![0.0; 3], vec![0.0; 3], vec![0.0; 3]];
        out.push(vec![0.0; 3]);
        let mut slices: Vec<&mut [f32]> = out.iter_mut().map(|v| v.as_mut_slice()).collect();
        source.next_batch(3, &mut slices).unwrap();
        let expected_data: Vec<f32> = data.iter().map(|&v| v as f32).collect();
        assert_eq!(out[0], expected_data);
        assert_eq!(out[0][2], 1e30);
        assert_eq!(out[1], [(1i64 << 40) as f32, -7.0, 3.0]);
        assert_eq!(out[2], [0.0, 200.0, 255.0]);
        assert_eq!(out[3], [-300.0, 0.0, 7.0]);
        assert_eq!(out[4], [4e9, 1.0, 2.0]);

        // A big-endian file.
        let options = WriteOptions {
            byte_order: ByteOrder::BigEndian,
            ..WriteOptions::default()
        };
        let bytes = Hdf5Builder::new()
            .dataset(
                DatasetBuilder::typed_with_order::<f32>("data", vec![3], ByteOrder::BigEndian)
                    .data(&[1.5f32, -2.0, 3.25])
                    .unwrap(),
            )
            .dataset(
                DatasetBuilder::typed_with_order::<i32>("label", vec![3], ByteOrder::BigEndian)
                    .data(&[-1i32, 0, 70000])
                    .unwrap(),
            )
            .into_plan()
            .unwrap()
            .encode(options)
            .unwrap();
        std::fs::write(dir.join("be.h5"), bytes).unwrap();
        let list_path = list(&dir, "be.txt", &["be.h5"]);
        let mut source = open(&list_path, false, 1).unwrap();
        let (mut data, mut label) = (vec![0.0; 3], vec![0.0; 3]);
        source.next_batch(3, &mut [&mut data, &mut label]).unwrap();
        assert_eq!(data, [1.5, -2.0, 3.25]);
        assert_eq!(label, [-1.0, 0.0, 70000.0]);
    }

    #[test]
    fn four_d_datasets_keep_their_row_shape() {
        let dir = temp_dir("4d");
        let values: Vec<f32> = (0..5 * 24).map(|i| i as f32).collect();
        let path = dir.join("x.h5");
        write(
            &path,
            vec![
                f32s("data", &[5, 2, 3, 4], &values),
                f32s("label", &[5], &[0.0, 1.0, 2.0, 3.0, 4.0]),
            ],
        );
        let list = list(&dir, "list.txt", &["x.h5"]);
        let mut source = open(&list, false, 1).unwrap();
        assert_eq!(source.row_shape(0), [2, 3, 4]);
        let (mut data, mut label) = (vec![0.0; 2 * 24], vec![0.0; 2]);
        for start in [0, 2, 4] {
            source.next_batch(2, &mut [&mut data, &mut label]).unwrap();
            let expected: Vec<f32> = (start * 24..(start + 2) * 24)
                .map(|i| (i % 120) as f32)
                .collect();
            assert_eq!(data, expected);
        }
    }

    fn open_err(list: &Path, datasets: &[&str]) -> String {
        match Hdf5Source::open(list, &names(datasets), false, rng(1, 0)) {
            Ok(_) => panic!("{} opened", list.display()),
            Err(e) => e.0,
        }
    }

    #[test]
    fn missing_list_file_or_dataset_give_errors_naming_them() {
        let dir = temp_dir("missing");
        numbered(&dir, "a.h5", 0, 3);
        let err = open_err(&dir.join("nope.txt"), &["data"]);
        assert!(
            err.contains("nope.txt") && err.contains("source list"),
            "{err}"
        );

        let empty = list(&dir, "empty.txt", &["", "   ", ""]);
        let err = open_err(&empty, &["data"]);
        assert!(err.contains("names no file"), "{err}");

        let missing = list(&dir, "missing.txt", &["a.h5", "gone.h5"]);
        let err = open_err(&missing, &["data"]);
        assert!(
            err.contains("missing.txt:2") && err.contains("\"gone.h5\""),
            "{err}"
        );
        let beside = dir.join("gone.h5").display().to_string();
        assert!(
            err.contains("tried gone.h5, ") && err.contains(&beside),
            "{err}"
        );

        let good = list(&dir, "good.txt", &["a.h5"]);
        let err = open_err(&good, &["data", "weights"]);
        let a = dir.join("a.h5").display().to_string();
        assert!(
            err.contains(&a) && err.contains("no dataset \"weights\""),
            "{err}"
        );
        assert!(err.contains("the file has: data, label"), "{err}");
    }

    #[test]
    fn absolute_paths_are_used_as_given() {
        let dir = temp_dir("absolute");
        let a = numbered(&dir, "a.h5", 0, 3);
        let list = list(&dir, "list.txt", &[&format!("  {}\r", a.display())]);
        let source = open(&list, false, 1).unwrap();
        assert_eq!(source.file_paths().collect::<Vec<_>>(), [a.as_path()]);
    }

    #[test]
    fn bad_shapes_and_types_give_errors() {
        let dir = temp_dir("shapes");
        numbered(&dir, "a.h5", 0, 3);
        let cases: Vec<(&str, Vec<DatasetBuilder>, &str)> = vec![
            (
                "rows.h5",
                vec![
                    f32s("data", &[3, 2], &[0.0; 6]),
                    f32s("label", &[2], &[0.0; 2]),
                ],
                "dataset \"label\" has 2 rows but \"data\" has 3",
            ),
            (
                "row_shape.h5",
                vec![
                    f32s("data", &[2, 3], &[0.0; 6]),
                    f32s("label", &[2], &[0.0; 2]),
                ],
                "the rows of dataset \"data\" have shape [3] but those of",
            ),
            (
                "empty.h5",
                vec![f32s("data", &[0, 2], &[]), f32s("label", &[0], &[])],
                "dataset \"data\" has no rows",
            ),
            (
                "strings.h5",
                vec![
                    DatasetBuilder::fixed_string_data("data", vec![2], &["ab", "cd"]).unwrap(),
                    f32s("label", &[2], &[0.0; 2]),
                ],
                "dataset \"data\": holds strings",
            ),
            (
                "scalar.h5",
                vec![f32s("data", &[], &[1.0]), f32s("label", &[1], &[0.0])],
                "dataset \"data\": has 0 axes",
            ),
        ];
        for (name, datasets, expected) in cases {
            write(&dir.join(name), datasets);
            let list = list(&dir, "list.txt", &["a.h5", name]);
            let err = open_err(&list, &["data", "label"]);
            assert!(
                err.contains(expected) && err.contains(name),
                "{name}: {err}"
            );
        }
    }

    #[test]
    fn unreadable_files_give_errors_not_panics() {
        let dir = temp_dir("unreadable");
        std::fs::write(dir.join("text.h5"), "not an HDF5 file\n").unwrap();
        std::fs::write(dir.join("empty.h5"), "").unwrap();
        for name in ["text.h5", "empty.h5"] {
            let list = list(&dir, "list.txt", &[name]);
            let err = open_err(&list, &["data"]);
            assert!(
                err.contains(name) && err.contains("cannot open it as an HDF5 file"),
                "{err}"
            );
        }

        // Truncated files: refused when opened, or when their rows are read; the error names the file.
        let full = std::fs::read(numbered(&dir, "big.h5", 0, 1000)).unwrap();
        numbered(&dir, "a.h5", 0, 3);
        for keep in [full.len() / 2, full.len() - 1, 1024, 100] {
            std::fs::write(dir.join("cut.h5"), &full[..keep]).unwrap();
            let list = list(&dir, "list.txt", &["a.h5", "cut.h5"]);
            let err = match open(&list, false, 1) {
                Err(e) => e.0,
                Ok(mut source) => {
                    let (mut data, mut label) = (vec![0.0; 8], vec![0.0; 4]);
                    source
                        .next_batch(4, &mut [&mut data, &mut label])
                        .unwrap_err()
                        .0
                }
            };
            assert!(err.contains("cut.h5"), "{keep} bytes: {err}");
            assert!(!err.contains("no dataset"), "{keep} bytes: {err}");
        }
    }

    #[test]
    fn corrupted_files_never_panic() {
        let dir = temp_dir("corrupt");
        let path = numbered(&dir, "x.h5", 0, 50);
        let full = std::fs::read(&path).unwrap();
        let list = list(&dir, "list.txt", &["x.h5"]);
        let mut r = rng(99, 0);
        for _ in 0..300 {
            use rand::Rng as _;
            let mut bytes = full.clone();
            for _ in 0..r.random_range(1..=4) {
                let at = if r.random_bool(0.5) {
                    r.random_range(0..bytes.len().min(2048))
                } else {
                    r.random_range(0..bytes.len())
                };
                bytes[at] = r.random();
            }
            std::fs::write(&path, &bytes).unwrap();
            if let Ok(mut source) = open(&list, false, 1) {
                let (mut data, mut label) = (vec![0.0; 200], vec![0.0; 100]);
                let _ = source.next_batch(100, &mut [&mut data, &mut label]);
            }
        }
    }

    #[test]
    fn a_saved_position_gives_the_same_next_batches() {
        let list = three_files("position");
        for shuffle in [false, true] {
            let mut source = open(&list, shuffle, 5).unwrap();
            ids(&mut source, 5, 3);
            let saved = source.position().clone();
            let expected = ids(&mut source, 5, 7);

            // Into a source made with another seed, or back into the same one after reading on.
            let mut other = open(&list, shuffle, 6).unwrap();
            other.set_position(saved.clone()).unwrap();
            assert_eq!(ids(&mut other, 5, 7), expected, "shuffle {shuffle}");
            source.set_position(saved.clone()).unwrap();
            assert_eq!(ids(&mut source, 5, 7), expected, "shuffle {shuffle}");

            // Rebuilt from plain values, as a solverstate stores it.
            use rand::SeedableRng;
            let old = saved.rng();
            let mut rebuilt = Rng::from_seed(old.get_seed());
            rebuilt.set_stream(old.get_stream());
            rebuilt.set_word_pos(old.get_word_pos());
            let copy = Hdf5Position::new(
                saved.file_order().to_vec(),
                saved.file(),
                saved.row_order().to_vec(),
                saved.row(),
                rebuilt,
            );
            assert_eq!(copy, saved);
            other.set_position(copy).unwrap();
            assert_eq!(ids(&mut other, 5, 7), expected, "shuffle {shuffle}");
        }
    }

    #[test]
    fn positions_that_do_not_fit_are_refused() {
        let list = three_files("bad-position");
        let mut source = open(&list, true, 5).unwrap();
        let good = source.position().clone();
        let mut bad = Vec::new();
        let mut p = good.clone();
        p.set_file_order(vec![0, 0, 1]);
        bad.push((p, "file order"));
        let mut p = good.clone();
        p.set_file(3);
        bad.push((p, "file 3"));
        let mut p = good.clone();
        p.set_row_order(vec![0, 1]);
        bad.push((p, "row order"));
        let mut p = good.clone();
        p.set_row(99);
        bad.push((p, "row 99"));
        for (p, expected) in bad {
            let err = source.set_position(p).unwrap_err().0;
            assert!(err.contains(expected) && err.contains("list.txt"), "{err}");
        }
        // Refused positions leave reading where it was.
        assert_eq!(source.position(), &good);
        // Empty orders mean the list's order and the natural row order.
        let mut p = good.clone();
        p.set_file_order(Vec::new());
        p.set_row_order(Vec::new());
        p.set_file(1);
        p.set_row(2);
        source.set_position(p).unwrap();
        assert_eq!(batch(&mut source, 3).1, [102.0, 103.0, 104.0]);
    }

    #[test]
    fn outputs_of_the_wrong_size_are_refused() {
        let list = three_files("outputs");
        let mut source = open(&list, false, 5).unwrap();
        let (mut data, mut label) = (vec![0.0; 3], vec![0.0; 2]);
        let err = source
            .next_batch(2, &mut [&mut data, &mut label])
            .unwrap_err();
        assert!(err.0.contains("\"data\" holds 3 values"), "{err}");
        assert!(source.next_batch(2, &mut [&mut label]).is_err());
    }
}
