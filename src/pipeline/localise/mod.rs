//! TEMPORARY: whole image as one joint, until the detector lands.

use image::GrayImage;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Right,
    Left,
    Unknown,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Square {
    pub x: i32,
    pub y: i32,
    pub side: u32,
}

#[derive(Clone, Debug)]
pub struct Joint {
    pub centre: (f32, f32),
    pub square: Square,
    pub side: Side,
    pub score: f32,
}

#[derive(Clone, Debug)]
pub struct Localisation {
    pub joints: Vec<Joint>,
    pub whole_image_is_one_joint: bool,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum NotFound {
    #[error("no knee joint found in this image: it is blank (almost no contrast)")]
    Blank,
}

pub fn localise(gray: &GrayImage, _mm: Option<f32>) -> Result<Localisation, NotFound> {
    let (w, h) = gray.dimensions();
    Ok(Localisation {
        joints: vec![Joint {
            centre: (w as f32 / 2.0, h as f32 / 2.0),
            square: Square {
                x: 0,
                y: 0,
                side: w.max(h),
            },
            side: Side::Unknown,
            score: 1.0,
        }],
        whole_image_is_one_joint: true,
    })
}

pub fn crop(gray: &GrayImage, _square: &Square) -> (GrayImage, bool) {
    (gray.clone(), false)
}
