//! `crema convert-imageset ROOT_FOLDER LIST_FILE DB_PATH`: image files listed with their labels into a new LMDB
//! of Caffe `Datum` records, as Caffe's `convert_imageset` tool.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use crema::data::datum::image_datum;
use crema::data::image_list::read_list;
use crema::data::lmdb::{image_key, LmdbWriter};
use crema::data::pixels::{ColorMode, Encoding};
use rand::seq::SliceRandom;

/// Convert a list of images and labels into an LMDB for a Data layer, as Caffe's convert_imageset.
///
/// LIST_FILE holds `path label` lines (the label follows the last space, so paths may hold spaces). Each
/// image is ROOT_FOLDER followed by its path, joined as text as Caffe does (end ROOT_FOLDER with `/`).
/// Images are stored as raw BGR (or grey) pixels, channels first, or with --encoded as PNG/JPEG files; keys
/// are `%08d_<path>`, the line's number (from 0) and its path. An image that cannot be read is skipped with a
/// warning, as Caffe does. DB_PATH must not exist.
///
/// Example: crema convert-imageset --resize-height 32 --resize-width 32 --shuffle images/ train.txt train_lmdb
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Resize every image to this height (with --resize-width; 0 keeps each image's size).
    #[arg(long, alias = "resize_height", default_value_t = 0)]
    resize_height: usize,
    /// Resize every image to this width (with --resize-height).
    #[arg(long, alias = "resize_width", default_value_t = 0)]
    resize_width: usize,
    /// Read images as grey (1 channel) instead of colour (3 channels, BGR).
    #[arg(long)]
    gray: bool,
    /// Shuffle the lines (with --seed) before converting.
    #[arg(long)]
    shuffle: bool,
    /// The seed of --shuffle (Caffe's tool draws one at random; crema's default repeats).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Store the image files encoded (PNG or JPEG, from each file's extension or --encode-type) instead of
    /// raw pixels.
    #[arg(long)]
    encoded: bool,
    /// The encoding of --encoded records: png or jpg (implies --encoded). Files already in it are stored as
    /// they are, unless resized.
    #[arg(long, alias = "encode_type", value_enum)]
    encode_type: Option<EncodeType>,
    /// Check that every image has the size of the first (after resizing).
    #[arg(long, alias = "check_size")]
    check_size: bool,
    /// The database kind: lmdb (crema writes no LevelDB).
    #[arg(long, default_value = "lmdb")]
    backend: String,
    /// Prepended, as text, to every listed path.
    root_folder: String,
    /// The list of `path label` lines.
    list_file: PathBuf,
    /// The LMDB folder to create.
    db_path: PathBuf,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum EncodeType {
    Png,
    #[value(alias = "jpeg")]
    Jpg,
}

pub fn run(args: Args) -> Result<()> {
    if !args.backend.eq_ignore_ascii_case("lmdb") {
        bail!(
            "--backend {}: crema writes LMDB only (use --backend lmdb, and backend: LMDB in the Data layer)",
            args.backend
        );
    }
    let mut lines = read_list(&args.list_file)?;
    if args.shuffle {
        lines.shuffle(&mut crema::math::rng(args.seed, 0));
        eprintln!("Shuffling data");
    }
    eprintln!("A total of {} images.", lines.len());
    let encoded = args.encoded || args.encode_type.is_some();
    let fixed = args.encode_type.map(|e| match e {
        EncodeType::Png => Encoding::Png,
        EncodeType::Jpg => Encoding::Jpeg,
    });
    let mode = if args.gray {
        ColorMode::Gray
    } else {
        ColorMode::Color
    };
    let mut writer = LmdbWriter::create(&args.db_path)?;
    let (mut count, mut skipped, mut guessed_png) = (0usize, 0usize, false);
    let mut first_shape: Option<([usize; 3], String)> = None;
    for (index, (listed, label)) in lines.iter().enumerate() {
        let path = PathBuf::from(format!("{}{listed}", args.root_folder));
        let encoding = match (encoded, fixed) {
            (false, _) => None,
            (true, Some(e)) => Some(e),
            // From the file's extension, as Caffe guesses it; PNG (lossless) when it names neither.
            (true, None) => Some(
                path.extension()
                    .and_then(|e| e.to_str())
                    .and_then(Encoding::from_name)
                    .unwrap_or_else(|| {
                        guessed_png = true;
                        Encoding::Png
                    }),
            ),
        };
        let resize = (args.resize_height, args.resize_width);
        let (datum, shape) = match image_datum(&path, *label, resize, mode, encoding) {
            Ok(made) => made,
            Err(e) => {
                eprintln!("warning: skipping line {}: {e}", index + 1);
                skipped += 1;
                continue;
            }
        };
        if args.check_size {
            match &first_shape {
                None => first_shape = Some((shape, listed.clone())),
                Some((first, name)) if *first != shape => bail!(
                    "--check-size: {} is {} × {} × {} but {name} is {} × {} × {} (channels × height × width)",
                    path.display(),
                    shape[0],
                    shape[1],
                    shape[2],
                    first[0],
                    first[1],
                    first[2]
                ),
                Some(_) => {}
            }
        }
        writer.put(
            image_key(index, listed).as_bytes(),
            &crema::proto::binary::encode(&datum),
        )?;
        count += 1;
        if count % 1000 == 0 {
            eprintln!("Processed {count} files.");
        }
    }
    if guessed_png {
        eprintln!(
            "note: some files' extensions name neither PNG nor JPEG; they were encoded as PNG"
        );
    }
    if count == 0 {
        drop(writer);
        let _ = std::fs::remove_dir_all(&args.db_path);
        let hint = if !args.root_folder.is_empty() && !args.root_folder.ends_with('/') {
            format!(
                " (ROOT_FOLDER is prepended as text, as Caffe does: did you mean \"{}/\"?)",
                args.root_folder
            )
        } else {
            String::new()
        };
        bail!(
            "no image of {} could be read (tried {} lines); nothing was written{hint}",
            args.list_file.display(),
            lines.len()
        );
    }
    let written = writer
        .finish()
        .with_context(|| format!("writing {}", args.db_path.display()))?;
    if count % 1000 != 0 {
        eprintln!("Processed {count} files.");
    }
    let skipped = if skipped > 0 {
        format!(" ({skipped} skipped)")
    } else {
        String::new()
    };
    println!(
        "{}: {written} records{skipped}, {}",
        args.db_path.display(),
        if encoded { "encoded" } else { "raw pixels" }
    );
    Ok(())
}
