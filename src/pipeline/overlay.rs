//! The pictures of a result: each knee's crop in the model's 224×224 frame with the Grad-CAM
//! heatmap over the band the model saw and the region of interest outlined, and the whole film
//! with each knee's box.

use image::{GrayImage, Rgb, RgbImage};

use crate::pipeline::cam::{self, CamError, CamGrid, ROI_THRESHOLD};
use crate::pipeline::preprocess::{CROP_BOTTOM, CROP_TOP, INPUT_SIZE};
use crate::record::{Concern, Knee, Roi};

/// How strongly the heatmap is blended over the X-ray.
const HEAT_ALPHA: f32 = 0.45;

/// The X-ray in the model's 224×224 frame (`preprocess::resize_to_input`), dimmed outside the
/// band the model sees (rows 60..164), with the Grad-CAM heatmap over that band and the ROI
/// outlined.
pub fn overlay_image(
    frame: &GrayImage,
    grid: &CamGrid,
) -> Result<(RgbImage, Option<Roi>), CamError> {
    let band_h = CROP_BOTTOM - CROP_TOP;
    let heat = cam::upsample(grid, INPUT_SIZE, band_h);
    let band = image::imageops::crop_imm(frame, 0, CROP_TOP, INPUT_SIZE, band_h).to_image();
    let mut band_rgb = cam::overlay(&band, &heat, HEAT_ALPHA)?;
    cam::draw_roi_outline(&mut band_rgb, &heat, ROI_THRESHOLD)?;
    let mut out = RgbImage::from_fn(INPUT_SIZE, INPUT_SIZE, |x, y| {
        let v = (frame.get_pixel(x, y)[0] as u16 * 2 / 5) as u8; // outside the band: dimmed
        image::Rgb([v, v, v])
    });
    image::imageops::replace(&mut out, &band_rgb, 0, CROP_TOP as i64);
    let roi = cam::roi(&heat, ROI_THRESHOLD).map(|r| Roi {
        y: r.y + CROP_TOP,
        ..r
    });
    Ok((out, roi))
}

/// The longest side of the whole-film picture.
pub const FILM_LONGEST: u32 = 640;

/// The colour of a knee's box on the film picture.
fn knee_colour(knee: &Knee) -> Rgb<u8> {
    match knee.concern() {
        Concern::Refer => Rgb([255, 176, 0]),
        Concern::Oa => Rgb([230, 40, 40]),
        Concern::NoOa => Rgb([40, 200, 80]),
    }
}

/// The whole radiograph, scaled to at most `FILM_LONGEST` pixels, with each knee's box; the
/// panel and the console write the side and grade beside each box.
pub fn film_image(gray: &GrayImage, knees: &[Knee]) -> RgbImage {
    let (w, h) = gray.dimensions();
    let scale = (FILM_LONGEST as f32 / w.max(h) as f32).min(1.0);
    let (fw, fh) = (
        ((w as f32 * scale).round() as u32).max(1),
        ((h as f32 * scale).round() as u32).max(1),
    );
    let small = image::imageops::resize(gray, fw, fh, image::imageops::FilterType::Triangle);
    let mut film = RgbImage::from_fn(fw, fh, |x, y| {
        let v = small.get_pixel(x, y)[0];
        Rgb([v, v, v])
    });
    for knee in knees {
        let [x, y, bw, bh] = knee.bbox.map(|v| (v as f32 * scale).round() as i64);
        draw_box(&mut film, [x, y, bw, bh], knee_colour(knee), 2);
    }
    film
}

/// Draws the outline of `[x, y, width, height]` (clipped to the picture), `thickness` pixels
/// wide, inside the box.
fn draw_box(img: &mut RgbImage, [x, y, w, h]: [i64; 4], colour: Rgb<u8>, thickness: i64) {
    let (iw, ih) = (i64::from(img.width()), i64::from(img.height()));
    for py in y.max(0)..(y + h).min(ih) {
        for px in x.max(0)..(x + w).min(iw) {
            let edge = px - x < thickness
                || x + w - 1 - px < thickness
                || py - y < thickness
                || y + h - 1 - py < thickness;
            if edge {
                img.put_pixel(px as u32, py as u32, colour);
            }
        }
    }
}
