//! The views and the waiting screen, each laid out in the area left between the "working…" strip
//! and the footer, using only the `layout` toolkit.

use embedded_graphics::{
    pixelcolor::{Rgb565, Rgb888},
    prelude::DrawTarget,
};

use super::layout::{colour, ellipsize, Align, Area, Cut, Font, Screen};
use super::state::{file_name, Focused, StatusInfo};
use crate::pipeline::cam;
use crate::record::{Concern, Grading, Knee, Outcome, Record};

type Drawn<D> = Result<(), <D as DrawTarget>::Error>;

/// Short form of the notice every result carries, for panels too narrow for the whole sentence.
const SCREENING_AID: &str = "Screening aid, not a diagnosis";
const REJECTED: [&str; 1] = ["Not analysed: this file was rejected"];
/// The grade's description gets at most this many lines, leaving room for warnings.
const DESCRIPTION_LINES: usize = 3;
/// Below this much free space the status view flags the disk: a few hundred results at most.
const LOW_DISK_BYTES: u64 = 200_000_000;

/// Grade card: the grade large, what it means, OA, the probabilities, the refer banner and the
/// screening-aid notice. A rejected input shows why instead.
pub fn grade<D: DrawTarget<Color = Rgb565>>(
    s: &mut Screen<D>,
    area: Area,
    record: &Record,
) -> Drawn<D> {
    let g = match &record.outcome {
        Outcome::Ok(g) => g,
        Outcome::Rejected { reason } => return rejected(s, area, record, reason),
    };
    let pad = s.theme.pad;
    let mut rest = area.inset(pad);

    let kl = format!("KL {}", g.headline.grade);
    let mut header = rest.take_top(s.big_height());
    rest.take_top(pad);
    s.big_text(header.take_left(s.big_width(&kl)), &kl, colour::ACCENT)?;
    header.take_left(2 * pad);
    s.line(
        &mut header,
        &g.headline.grade_name,
        Font::Bold,
        colour::TEXT,
    )?;
    let (oa, oa_colour) = if g.headline.oa {
        ("yes", colour::ALERT)
    } else {
        ("no", colour::GOOD)
    };
    // The call's rule in brief: the OA probability against the operating point's threshold.
    let oa_line = match &g.oa_call {
        Some(call) => {
            let side = if g.headline.oa { ">=" } else { "<" };
            let (p, t) = (percent(g.headline.oa_probability), percent(call.threshold));
            format!("OA: {oa} ({p} {side} {t})")
        }
        None => format!("OA: {oa} ({})", percent(g.headline.oa_probability)),
    };
    s.line(&mut header, &oa_line, Font::Bold, oa_colour)?;
    s.line(
        &mut header,
        &format!("confidence {}", percent(g.headline.confidence)),
        Font::Small,
        colour::DIM,
    )?;

    // From the bottom up, so that these always get their room and the text above gets the rest.
    let notice = s
        .theme
        .first_fitting(&[&g.notice, SCREENING_AID], Font::Small, rest.w);
    let notice_area = rest.take_bottom(s.theme.line_height(Font::Small));
    s.text(notice_area, notice, Font::Small, colour::TEXT, Align::Left)?;
    rest.take_bottom(pad);
    probability_bars(s, &mut rest, g)?;
    if g.refer {
        // On one line where it fits, else on two.
        // Records from before reasons were kept have none.
        let why = (g.refer_reason.map(|r| format!("{} - ", r.label()))).unwrap_or_default();
        let one_line = format!("REFER: {why}clinician read needed");
        let two_lines = format!("REFER\n{why}clinician read needed");
        banner(s, &mut rest, Edge::Bottom, &[&one_line, &two_lines])?;
    }

    let description = &g.headline.grade_description;
    s.paragraph(
        &mut rest,
        description,
        Font::Body,
        colour::TEXT,
        DESCRIPTION_LINES,
    )?;
    for warning in &g.warnings {
        rest.take_top(pad / 2);
        s.paragraph(
            &mut rest,
            &format!("! {warning}"),
            Font::Small,
            colour::WARN,
            usize::MAX,
        )?;
    }
    Ok(())
}

/// One row per grade: label, bar, percentage; the predicted grade stands out.
fn probability_bars<D: DrawTarget<Color = Rgb565>>(
    s: &mut Screen<D>,
    rest: &mut Area,
    g: &Grading,
) -> Drawn<D> {
    let row_height = s.theme.line_height(Font::Body) + s.theme.pad / 2;
    let mut bars = rest.take_bottom(row_height * g.headline.probabilities.len() as u32);
    rest.take_bottom(s.theme.pad);
    let label_width = s.theme.width_of(Font::Body, 4);
    let value_width = s.theme.width_of(Font::Body, 5);
    for (grade, &p) in g.headline.probabilities.iter().enumerate() {
        let mut row = bars.take_top(row_height);
        let c = if grade == usize::from(g.headline.grade) {
            colour::ACCENT
        } else {
            colour::BAR
        };
        s.text(
            row.take_left(label_width),
            &format!("KL{grade}"),
            Font::Body,
            c,
            Align::Left,
        )?;
        s.text(
            row.take_right(value_width),
            &percent(p),
            Font::Body,
            c,
            Align::Right,
        )?;
        s.bar(row.centred(row.w, row.h / 2), p, c)?;
    }
    Ok(())
}

#[derive(Clone, Copy)]
enum Edge {
    Top,
    Bottom,
}

/// Black bold text on an amber band across `rest`, taken off its `edge`: the first of `texts`
/// that fits on one line, else the last one wrapped.
fn banner<D: DrawTarget<Color = Rgb565>>(
    s: &mut Screen<D>,
    rest: &mut Area,
    edge: Edge,
    texts: &[&str],
) -> Drawn<D> {
    let margin = s.theme.pad / 2;
    let width = rest.w.saturating_sub(2 * margin);
    let text = s.theme.first_fitting(texts, Font::Bold, width);
    let lines = s.wrap(text, Font::Bold, width, 3);
    let height = s.height(&lines) + 2 * margin;
    let band = match edge {
        Edge::Top => rest.take_top(height),
        Edge::Bottom => rest.take_bottom(height),
    };
    match edge {
        Edge::Top => rest.take_top(s.theme.pad),
        Edge::Bottom => rest.take_bottom(s.theme.pad),
    };
    s.fill(band, colour::WARN)?;
    s.draw_lines(band.inset(margin), &lines, colour::ON_BANNER, Align::Centre)
}

/// The grade card of an input that could not be analysed: which file, and why.
fn rejected<D: DrawTarget<Color = Rgb565>>(
    s: &mut Screen<D>,
    area: Area,
    record: &Record,
    reason: &str,
) -> Drawn<D> {
    let pad = s.theme.pad;
    let mut rest = area.inset(pad);
    banner(s, &mut rest, Edge::Top, &REJECTED)?;
    s.line(&mut rest, "File", Font::Small, colour::DIM)?;
    let name = file_name(&record.file);
    s.paragraph(&mut rest, name, Font::Bold, colour::TEXT, 2)?;
    if let Some(folder) = record.file.strip_suffix(name).filter(|f| !f.is_empty()) {
        s.paragraph(
            &mut rest,
            &format!("in {folder}"),
            Font::Small,
            colour::DIM,
            2,
        )?;
    }
    rest.take_top(pad);
    s.line(&mut rest, "Reason", Font::Small, colour::DIM)?;
    s.paragraph(&mut rest, reason, Font::Body, colour::TEXT, usize::MAX)
}

/// The X-ray with the Grad-CAM heatmap, its colour scale and the region of interest.
pub fn overlay<D: DrawTarget<Color = Rgb565>>(
    s: &mut Screen<D>,
    area: Area,
    study: &Focused,
) -> Drawn<D> {
    let Some(img) = study.pictures.map(|p| &p.overlay) else {
        return no_picture(s, area, "No heatmap", &study.record);
    };
    let grading = study.record.grading();
    let roi = grading.and_then(|g| g.headline.roi);
    let looked_for = match grading {
        Some(g) => format!(
            "Where the model looked for KL {} ({})",
            g.headline.grade, g.headline.grade_name
        ),
        None => "Where the model looked".to_string(),
    };
    let mut caption = vec![
        Caption::Text("Grad-CAM".into(), Font::Bold, colour::TEXT),
        Caption::Text(looked_for, Font::Small, colour::DIM),
        Caption::ColourScale,
    ];
    if roi.is_some() {
        caption.push(Caption::Text(
            "Box: region of interest".into(),
            Font::Small,
            colour::ROI,
        ));
    }
    let size = img.dimensions();
    let placed = picture_with_caption(s, area, size, &caption, |x, y| {
        let [r, g, b] = img.get_pixel(x, y).0;
        Rgb888::new(r, g, b).into()
    })?;
    if let Some(roi) = roi {
        // Drawn at panel resolution: the 1-pixel outline in the image can vanish when scaled down.
        let to_panel = |v: u32, image_len: u32, placed_len: u32| {
            (u64::from(v.min(image_len)) * u64::from(placed_len) / u64::from(image_len)) as u32
        };
        let (x0, y0) = (
            to_panel(roi.x, size.0, placed.w),
            to_panel(roi.y, size.1, placed.h),
        );
        let x1 = to_panel(roi.x.saturating_add(roi.width), size.0, placed.w);
        let y1 = to_panel(roi.y.saturating_add(roi.height), size.1, placed.h);
        let outline = Area {
            x: placed.x + x0 as i32,
            y: placed.y + y0 as i32,
            w: x1 - x0,
            h: y1 - y0,
        };
        s.outline(outline, colour::ROI, (s.theme.pad / 4).max(1))?;
    }
    Ok(())
}

/// The whole radiograph with each knee's box, and beside each box its side and grade.
pub fn film<D: DrawTarget<Color = Rgb565>>(
    s: &mut Screen<D>,
    area: Area,
    study: &Focused,
) -> Drawn<D> {
    let (Some(img), Some(g)) = (study.film, study.record.grading()) else {
        return no_picture(s, area, "No radiograph", &study.record);
    };
    let found = match g.knees.len() {
        1 => "1 knee joint found".to_string(),
        n => format!("{n} knee joints found"),
    };
    let mut caption = vec![
        Caption::Text("Radiograph".into(), Font::Bold, colour::TEXT),
        Caption::Text(found, Font::Small, colour::DIM),
    ];
    for knee in &g.knees {
        let refer = if knee.refer { ", REFER" } else { "" };
        let oa = if knee.graded.oa { "OA" } else { "no OA" };
        caption.push(Caption::Text(
            format!(
                "{}: KL {} ({oa}{refer})",
                knee.side.title(),
                knee.graded.grade
            ),
            Font::Small,
            knee_colour(knee),
        ));
    }
    let size = img.dimensions();
    let placed = picture_with_caption(s, area, size, &caption, |x, y| {
        let [r, g, b] = img.get_pixel(x, y).0;
        Rgb888::new(r, g, b).into()
    })?;
    // Labels at panel resolution, inside each box's top-left corner.
    let scale = placed.w as f32 / g.input_width.max(1) as f32;
    for knee in &g.knees {
        let [x, y, ..] = knee.bbox;
        let label = format!("{} {}", knee.side.letter(), knee.graded.grade);
        let width = s.theme.width_of(Font::Bold, label.chars().count());
        let height = s.theme.line_height(Font::Bold);
        let at = |v: i64, len: u32, room: u32| {
            ((v as f32 * scale).max(0.0) as u32 + s.theme.pad / 2).min(len.saturating_sub(room))
        };
        let tag = Area {
            x: placed.x + at(x, placed.w, width) as i32,
            y: placed.y + at(y, placed.h, height) as i32,
            w: width,
            h: height,
        };
        s.fill(tag, colour::BACKGROUND)?;
        s.text(tag, &label, Font::Bold, knee_colour(knee), Align::Left)?;
    }
    Ok(())
}

/// A knee's colour on the panel: amber when referred, red for OA, green otherwise (as its box).
fn knee_colour(knee: &Knee) -> Rgb565 {
    match knee.concern() {
        Concern::Refer => colour::WARN,
        Concern::Oa => colour::ALERT,
        Concern::NoOa => colour::GOOD,
    }
}

/// The preprocessed image exactly as the network received it.
pub fn input<D: DrawTarget<Color = Rgb565>>(
    s: &mut Screen<D>,
    area: Area,
    study: &Focused,
) -> Drawn<D> {
    let Some(img) = study.pictures.map(|p| &p.network_input) else {
        return no_picture(s, area, "No network input", &study.record);
    };
    let (w, h) = img.dimensions();
    let caption = [
        Caption::Text("What the model saw".into(), Font::Bold, colour::TEXT),
        Caption::Text(
            format!(
                "The {w}\u{d7}{h} network input: the joint band, stretched and contrast-equalised"
            ),
            Font::Small,
            colour::DIM,
        ),
    ];
    picture_with_caption(s, area, (w, h), &caption, |x, y| {
        let v = img.get_pixel(x, y).0[0];
        Rgb888::new(v, v, v).into()
    })?;
    Ok(())
}

/// A line of a picture's caption.
enum Caption {
    Text(String, Font, Rgb565),
    /// The heatmap's colours from low to high.
    ColourScale,
}

/// A caption line below a picture wraps to at most this many lines.
const CAPTION_LINES: usize = 3;

/// A picture as large as fits, with its caption beside it when the area is wide enough for a
/// readable column, else below it. Returns where the picture was drawn.
fn picture_with_caption<D: DrawTarget<Color = Rgb565>>(
    s: &mut Screen<D>,
    area: Area,
    size: (u32, u32),
    caption: &[Caption],
    pixel: impl Fn(u32, u32) -> Rgb565,
) -> Result<Area, D::Error> {
    let pad = s.theme.pad;
    let mut rest = area.inset(pad);
    let side = rest.w.saturating_sub(rest.h + pad);
    // Beside the picture the caption has the whole height; below it, a few lines at most.
    let (mut text_area, max_lines) = if s.theme.chars_in(Font::Small, side) >= 14 {
        let column = rest.take_right(side);
        rest.take_right(pad);
        (column, usize::MAX)
    } else {
        let height = caption
            .iter()
            .map(|line| match line {
                Caption::Text(text, font, _) => {
                    s.height(&s.wrap(text, *font, rest.w, CAPTION_LINES))
                }
                Caption::ColourScale => s.theme.line_height(Font::Small),
            })
            .sum();
        let below = rest.take_bottom(height);
        rest.take_bottom(pad);
        (below, CAPTION_LINES)
    };
    let placed = s.picture(rest, size, pixel)?;
    for line in caption {
        match line {
            Caption::Text(text, font, c) => {
                s.paragraph(&mut text_area, text, *font, *c, max_lines)?
            }
            Caption::ColourScale => {
                colour_scale(s, text_area.take_top(s.theme.line_height(Font::Small)))?
            }
        }
    }
    Ok(placed)
}

/// "low ▬▬▬ high" in the heatmap's colours.
fn colour_scale<D: DrawTarget<Color = Rgb565>>(s: &mut Screen<D>, mut row: Area) -> Drawn<D> {
    let (low, high) = ("low ", " high");
    let low_area = row.take_left(s.theme.width_of(Font::Small, low.len()));
    s.text(low_area, low, Font::Small, colour::DIM, Align::Left)?;
    let room = row
        .w
        .saturating_sub(s.theme.width_of(Font::Small, high.len()));
    let strip = row.take_left(room.min(s.theme.width_of(Font::Small, 20)));
    s.text(row, high, Font::Small, colour::DIM, Align::Left)?;
    let strip = strip.centred(strip.w, strip.h / 2);
    for i in 0..strip.w {
        let [r, g, b] = cam::colormap(i as f32 / strip.w.saturating_sub(1).max(1) as f32);
        let column = Area {
            x: strip.x + i as i32,
            w: 1,
            ..strip
        };
        s.fill(column, Rgb888::new(r, g, b).into())?;
    }
    Ok(())
}

/// What the picture views show when there is no picture (a rejected input).
fn no_picture<D: DrawTarget<Color = Rgb565>>(
    s: &mut Screen<D>,
    area: Area,
    title: &str,
    record: &Record,
) -> Drawn<D> {
    let width = area.inset(s.theme.pad).w;
    let text = match record.rejection() {
        Some(reason) => format!("This file was rejected: {reason}"),
        None => "No picture was kept for this study.".to_string(),
    };
    let blocks = [
        (s.wrap(title, Font::Bold, width, 2), colour::ACCENT),
        (s.wrap(&text, Font::Body, width, 6), colour::TEXT),
    ];
    s.centred(area.inset(s.theme.pad), &blocks)
}

/// Model, queue, counts, free disk, inputs watched and the last error.
pub fn status<D: DrawTarget<Color = Rgb565>>(
    s: &mut Screen<D>,
    area: Area,
    st: &StatusInfo,
) -> Drawn<D> {
    let pad = s.theme.pad;
    let mut rest = area.inset(pad);
    s.line(&mut rest, "Status", Font::Bold, colour::ACCENT)?;
    rest.take_top(pad);

    // At the bottom, so a long list of inputs can never push it off the screen.
    let (error, error_colour) = match &st.last_error {
        Some(e) => (format!("Last error: {e}"), colour::ALERT),
        None => ("No errors".to_string(), colour::GOOD),
    };
    let lines = s.wrap(&error, Font::Body, rest.w, 4);
    let error_area = rest.take_bottom(s.height(&lines));
    rest.take_bottom(pad);
    s.draw_lines(error_area, &lines, error_colour, Align::Left)?;

    let model = if st.model.is_empty() {
        "none loaded"
    } else {
        &st.model
    };
    let (disk, disk_colour) = match st.free_disk_bytes {
        Some(b) if b < LOW_DISK_BYTES => (format!("{} (low)", bytes(b)), colour::ALERT),
        Some(b) => (bytes(b), colour::TEXT),
        None => ("unknown".to_string(), colour::WARN),
    };
    let mut rows = vec![("Model", model.to_string(), colour::TEXT)];
    if let Some(choice) = &st.model_choice {
        rows.push(("Chosen", choice.clone(), colour::TEXT));
    }
    rows.extend([
        ("Queue", format!("{} waiting", st.queue), colour::TEXT),
        ("Processed", st.processed.to_string(), colour::TEXT),
        ("Rejected", st.rejected.to_string(), colour::TEXT),
        ("Free disk", disk, disk_colour),
    ]);
    if let Some(node) = &st.dicom {
        let listening = node.listening.as_deref().unwrap_or("not listening");
        let line = format!("{listening}, {} received", node.received);
        rows.push(("DICOM", line, colour::TEXT));
    }
    if let Some(outbox) = &st.outbox {
        let line = format!("{} waiting, {} sent", outbox.pending, outbox.sent);
        let c = match outbox.last_error {
            Some(_) => colour::WARN,
            None => colour::TEXT,
        };
        rows.push(("PACS", line, c));
    }
    for (key, value, c) in rows {
        key_value(s, &mut rest, key, &value, c)?;
    }
    if let Some(fingerprint) = &st.console_certificate {
        let text = format!("Console certificate SHA-256: {fingerprint}");
        let lines = s.wrap(&text, Font::Body, rest.w, 5);
        let area = rest.take_top(s.height(&lines));
        s.draw_lines(area, &lines, colour::TEXT, Align::Left)?;
    }

    if st.watched.is_empty() {
        let none = "nothing (check the configuration)";
        return key_value(s, &mut rest, "Watching", none, colour::WARN);
    }
    // As many inputs as fit; when some do not, the last row says how many.
    let rows = (rest.h / s.theme.line_height(Font::Body)) as usize;
    let shown = if st.watched.len() <= rows {
        st.watched.len()
    } else {
        rows.saturating_sub(1)
    };
    let hidden = st.watched.len() - shown;
    let more = format!("+{hidden} more");
    let listed = st.watched[..shown]
        .iter()
        .map(|path| (path.as_str(), colour::TEXT));
    let summary = (hidden > 0).then_some((more.as_str(), colour::DIM));
    for (i, (value, c)) in listed.chain(summary).enumerate() {
        let key = if i == 0 { "Watching" } else { "" };
        key_value(s, &mut rest, key, value, c)?;
    }
    Ok(())
}

/// A "Key       value" row taken off the top of `rest`; long values lose their middle.
fn key_value<D: DrawTarget<Color = Rgb565>>(
    s: &mut Screen<D>,
    rest: &mut Area,
    key: &str,
    value: &str,
    c: Rgb565,
) -> Drawn<D> {
    let mut row = rest.take_top(s.theme.line_height(Font::Body));
    s.text(
        row.take_left(s.theme.width_of(Font::Body, 11)),
        key,
        Font::Body,
        colour::DIM,
        Align::Left,
    )?;
    let value = ellipsize(value, s.theme.chars_in(Font::Body, row.w), Cut::Middle);
    s.text(row, &value, Font::Body, c, Align::Left)
}

/// Before the first study: what to do, and what the appliance is watching.
pub fn waiting<D: DrawTarget<Color = Rgb565>>(
    s: &mut Screen<D>,
    area: Area,
    st: &StatusInfo,
) -> Drawn<D> {
    let inner = area.inset(s.theme.pad);
    let w = inner.w;
    let mut blocks = vec![
        (s.wrap("Ready", Font::Bold, w, 1), colour::ACCENT),
        (
            s.wrap("Insert a USB stick or scan an X-ray", Font::Bold, w, 3),
            colour::TEXT,
        ),
    ];
    if !st.watched.is_empty() {
        let folders: Vec<String> = st
            .watched
            .iter()
            .map(|f| ellipsize(f, s.theme.chars_in(Font::Small, w), Cut::Middle))
            .collect();
        let watching = format!("Watching\n{}", folders.join("\n"));
        blocks.push((s.wrap(&watching, Font::Small, w, 5), colour::DIM));
    }
    if !st.model.is_empty() {
        blocks.push((
            s.wrap(&format!("Model {}", st.model), Font::Small, w, 1),
            colour::DIM,
        ));
    }
    blocks.push((s.wrap(SCREENING_AID, Font::Small, w, 2), colour::DIM));
    s.centred(inner, &blocks)
}

/// A probability as a whole percentage.
fn percent(p: f32) -> String {
    if p.is_finite() {
        format!("{:.0}%", (p * 100.0).clamp(0.0, 100.0))
    } else {
        "--".to_string()
    }
}

/// A byte count in the units `df -h` users expect.
fn bytes(b: u64) -> String {
    const GB: f64 = 1e9;
    const MB: f64 = 1e6;
    let b = b as f64;
    if b >= GB {
        format!("{:.1} GB", b / GB)
    } else {
        format!("{:.0} MB", b / MB)
    }
}
