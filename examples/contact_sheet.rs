//! Contact sheets of the localiser's output on a folder of images.
//!
//! `cargo run --release --example contact_sheet -- DIR [OUT_DIR] [--crops] [--cut-outs=CUT_DIR]`
//! writes `OUT_DIR/sheet-NN.png` (default `/tmp/localiser-sheets`): each image as a thumbnail
//! with its number, every joint square (red: patient's right, blue: left, yellow: unknown,
//! white: whole image is one joint) and its score; with `--crops` each joint's 224×224 crop
//! follows its image. A line per image goes to stdout.
//!
//! With `--cut-outs=CUT_DIR`, every image with one joint found also gives the leg above and
//! below that joint (from three quarters of the crop's side away, when at least 100 pixels and
//! 0.4 of the width remain) as `above-…`/`below-…` PNGs in CUT_DIR: knee-free images, on which
//! the same command then counts false joints.

use image::{imageops, GrayImage, Rgb, RgbImage};
use kneescreen::pipeline::localise::{crop, localise, Joint};
use kneescreen::record::Side;

const THUMB: u32 = 220;
const COLUMNS: u32 = 8;
const PER_SHEET: usize = 48;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let with_crops = args.iter().any(|a| a == "--crops");
    let cut_outs = args.iter().find_map(|a| a.strip_prefix("--cut-outs="));
    if let Some(cut_dir) = cut_outs {
        std::fs::create_dir_all(cut_dir).expect("cut-out folder");
    }
    let paths: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let dir = paths
        .first()
        .expect("usage: contact_sheet DIR [OUT_DIR] [--crops]");
    let out_dir = paths.get(1).map_or("/tmp/localiser-sheets", |s| s.as_str());
    std::fs::create_dir_all(out_dir).expect("output folder");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("input folder")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("jpg" | "jpeg" | "png")
            )
        })
        .collect();
    files.sort();
    let mut tiles: Vec<RgbImage> = Vec::new();
    let mut sheet = 0;
    let (mut found, mut whole, mut none) = (0, 0, 0);
    for (n, path) in files.iter().enumerate() {
        let gray = image::open(path).expect("decodable image").to_luma8();
        let result = localise(&gray, None);
        let scale = THUMB as f32 / gray.width().max(gray.height()) as f32;
        let mut tile = RgbImage::from_pixel(THUMB, THUMB, Rgb([40, 40, 40]));
        let thumb = imageops::resize(
            &gray,
            ((gray.width() as f32 * scale) as u32).max(1),
            ((gray.height() as f32 * scale) as u32).max(1),
            imageops::FilterType::Triangle,
        );
        imageops::replace(&mut tile, &to_rgb(&thumb), 0, 0);
        let mut crops = Vec::new();
        match &result {
            Ok(loc) => {
                if let (Some(cut_dir), [joint]) = (cut_outs, loc.joints.as_slice()) {
                    if !loc.whole_image_is_one_joint {
                        write_cut_outs(&gray, joint, path, cut_dir);
                    }
                }
                if loc.whole_image_is_one_joint {
                    whole += 1;
                } else {
                    found += 1;
                }
                let summary: Vec<String> = loc
                    .joints
                    .iter()
                    .map(|j| {
                        format!(
                            "{:?} ({:.0},{:.0}) side {} score {:.2}",
                            j.side, j.centre.0, j.centre.1, j.square.side, j.score
                        )
                    })
                    .collect();
                println!(
                    "{n:4} {} {}{}",
                    path.file_name().unwrap().to_string_lossy(),
                    if loc.whole_image_is_one_joint {
                        "WHOLE "
                    } else {
                        ""
                    },
                    summary.join("; ")
                );
                for j in &loc.joints {
                    let colour = match (loc.whole_image_is_one_joint, j.side) {
                        (true, _) => Rgb([255, 255, 255]),
                        (_, Side::Right) => Rgb([255, 60, 60]),
                        (_, Side::Left) => Rgb([80, 140, 255]),
                        (_, Side::Unknown) => Rgb([255, 220, 0]),
                    };
                    let s = j.square;
                    draw_box(
                        &mut tile,
                        s.x as f32 * scale,
                        s.y as f32 * scale,
                        s.side as f32 * scale,
                        colour,
                    );
                    draw_text(
                        &mut tile,
                        ((s.x as f32 * scale).max(0.0) + 3.0) as i32,
                        ((s.y as f32 * scale).max(0.0) + 3.0) as i32,
                        &format!("{:.1}", j.score),
                        colour,
                    );
                    if with_crops {
                        let (c, padded) = crop(&gray, &s);
                        let c = imageops::resize(&c, THUMB, THUMB, imageops::FilterType::Triangle);
                        let mut c = to_rgb(&c);
                        if padded {
                            draw_text(&mut c, 4, THUMB as i32 - 14, "P", Rgb([255, 0, 255]));
                        }
                        crops.push(c);
                    }
                }
            }
            Err(e) => {
                none += 1;
                println!(
                    "{n:4} {} NOT FOUND: {e}",
                    path.file_name().unwrap().to_string_lossy()
                );
                draw_text(&mut tile, 4, THUMB as i32 - 14, "X", Rgb([255, 0, 255]));
            }
        }
        draw_text(&mut tile, 4, 4, &n.to_string(), Rgb([0, 255, 0]));
        tiles.push(tile);
        tiles.extend(crops);
        if tiles.len() >= PER_SHEET || n + 1 == files.len() {
            write_sheet(&tiles, &format!("{out_dir}/sheet-{sheet:02}.png"));
            tiles.clear();
            sheet += 1;
        }
    }
    println!(
        "{} images: {found} with joints, {whole} whole-image joints, {none} not found; sheets in {out_dir}",
        files.len()
    );
}

/// The leg above and below `joint`, each as its own PNG in `cut_dir`.
fn write_cut_outs(gray: &GrayImage, joint: &Joint, path: &std::path::Path, cut_dir: &str) {
    let (w, h) = (gray.width() as f32, gray.height() as f32);
    let reach = 0.75 * joint.square.side as f32;
    let stem = path.file_stem().unwrap().to_string_lossy();
    for (part, top, bottom) in [
        ("above", 0.0, joint.centre.1 - reach),
        ("below", joint.centre.1 + reach, h),
    ] {
        let (top, bottom) = (top.max(0.0) as u32, bottom.min(h) as u32);
        let rows = bottom.saturating_sub(top);
        if rows >= 100 && rows as f32 >= 0.4 * w {
            imageops::crop_imm(gray, 0, top, gray.width(), rows)
                .to_image()
                .save(format!("{cut_dir}/{part}-{stem}.png"))
                .expect("cut-out written");
        }
    }
}

fn to_rgb(gray: &GrayImage) -> RgbImage {
    RgbImage::from_fn(gray.width(), gray.height(), |x, y| {
        let v = gray.get_pixel(x, y)[0];
        Rgb([v, v, v])
    })
}

fn write_sheet(tiles: &[RgbImage], path: &str) {
    let rows = (tiles.len() as u32).div_ceil(COLUMNS);
    let mut sheet = RgbImage::from_pixel(COLUMNS * (THUMB + 4), rows * (THUMB + 4), Rgb([0, 0, 0]));
    for (i, t) in tiles.iter().enumerate() {
        let (c, r) = (i as u32 % COLUMNS, i as u32 / COLUMNS);
        imageops::replace(
            &mut sheet,
            t,
            i64::from(c * (THUMB + 4)),
            i64::from(r * (THUMB + 4)),
        );
    }
    sheet.save(path).expect("writable sheet");
}

fn put(img: &mut RgbImage, x: i32, y: i32, colour: Rgb<u8>) {
    if x >= 0 && y >= 0 && (x as u32) < img.width() && (y as u32) < img.height() {
        img.put_pixel(x as u32, y as u32, colour);
    }
}

fn draw_box(img: &mut RgbImage, x: f32, y: f32, side: f32, colour: Rgb<u8>) {
    let (x0, y0, x1, y1) = (x as i32, y as i32, (x + side) as i32, (y + side) as i32);
    for t in 0..2 {
        for x in x0..=x1 {
            put(img, x, y0 + t, colour);
            put(img, x, y1 - t, colour);
        }
        for y in y0..=y1 {
            put(img, x0 + t, y, colour);
            put(img, x1 - t, y, colour);
        }
    }
}

/// 3×5 pixel glyphs, drawn at twice their size.
fn draw_text(img: &mut RgbImage, x: i32, y: i32, text: &str, colour: Rgb<u8>) {
    for (i, ch) in text.chars().enumerate() {
        let rows: [u8; 5] = match ch {
            '0' => [7, 5, 5, 5, 7],
            '1' => [2, 6, 2, 2, 7],
            '2' => [7, 1, 7, 4, 7],
            '3' => [7, 1, 7, 1, 7],
            '4' => [5, 5, 7, 1, 1],
            '5' => [7, 4, 7, 1, 7],
            '6' => [7, 4, 7, 5, 7],
            '7' => [7, 1, 1, 1, 1],
            '8' => [7, 5, 7, 5, 7],
            '9' => [7, 5, 7, 1, 7],
            '.' => [0, 0, 0, 0, 2],
            '-' => [0, 0, 7, 0, 0],
            'P' => [7, 5, 7, 4, 4],
            'X' => [5, 5, 2, 5, 5],
            _ => [0; 5],
        };
        let ox = x + i as i32 * 8;
        for (r, bits) in rows.iter().enumerate() {
            for c in 0..3 {
                if bits & (4 >> c) != 0 {
                    for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                        put(img, ox + c * 2 + dx, y + r as i32 * 2 + dy, colour);
                    }
                }
            }
        }
    }
}
