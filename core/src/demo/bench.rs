//! The built-in benchmark: procedurally drawn chest images (frontal radiographs and axial CT
//! slices) with Med-VQA questions (presence, count, side, size, modality) and template reports
//! whose answers follow from the drawn scene, deterministic from a seed. A source domain (for
//! pre-training) and shifted target domains (another "scanner": contrast, noise, blur; inverted
//! polarity; low resolution; new question phrasings; a finding the source never shows) mirror
//! the papers' setting of adapting a pretrained Med-VLP model to a new task with little data.
//!
//! Radiological convention: the patient's left is on the image's right (both modalities; CT is
//! seen from the feet, anterior at the top).

use image::{GrayImage, Luma};
use serde::{Deserialize, Serialize};

/// A body side, as the patient has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Side {
    /// Patient's left (image right).
    Left,
    /// Patient's right (image left).
    Right,
}

impl Side {
    fn word(self) -> &'static str {
        match self {
            Side::Left => "left",
            Side::Right => "right",
        }
    }
}

/// How a study was imaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Modality {
    /// A frontal chest radiograph.
    XRay,
    /// An axial CT slice of the chest.
    Ct,
}

impl Modality {
    fn word(self) -> &'static str {
        match self {
            Modality::XRay => "x-ray",
            Modality::Ct => "ct",
        }
    }
}

/// What a scene contains.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scene {
    /// Radiograph or CT slice.
    pub modality: Modality,
    /// Cardiothoracic ratio > 0.5.
    pub cardiomegaly: bool,
    /// Pleural effusion and its side.
    pub effusion: Option<Side>,
    /// Pneumothorax and its side.
    pub pneumothorax: Option<Side>,
    /// Nodules: side, centre (relative to the lung box, 0..1) and radius (fraction of the image
    /// width).
    pub nodules: Vec<(Side, f32, f32, f32)>,
    /// Whether the nodules are large (all of a scene's nodules share a size class).
    pub large_nodules: bool,
    /// A pacemaker over the left upper chest.
    pub pacemaker: bool,
    /// A cavitating lesion (a ring) and its side: only in domains with the new finding.
    pub cavity: Option<Side>,
}

/// How a domain draws and asks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Domain {
    /// Name (`source`, `scanner-b`, `inverted`, `lowres`).
    pub name: String,
    /// Image side in pixels.
    pub size: u32,
    /// Contrast multiplier around mid-grey.
    pub contrast: f32,
    /// Standard deviation of additive noise (grey levels).
    pub noise: f32,
    /// MONOCHROME1-like inverted polarity.
    pub invert: bool,
    /// Question phrasing set (0 = source wording, 1 = the target's own wording).
    pub phrasing: usize,
    /// Box-blur radius in pixels (a softer detector).
    pub blur: u32,
    /// Whether scenes may show a cavity (a finding the source domain never has) and are asked
    /// about it.
    pub cavity: bool,
}

impl Domain {
    /// The pre-training domain.
    pub fn source() -> Self {
        Self {
            name: "source".into(),
            size: 64,
            contrast: 1.0,
            noise: 4.0,
            invert: false,
            phrasing: 0,
            blur: 0,
            cavity: false,
        }
    }

    /// A shifted target domain by name: `scanner-b` (low contrast, more noise, blur, new
    /// phrasing), `inverted` (inverted polarity, new phrasing), `lowres` (half resolution),
    /// `new-finding` (the source's images and wording plus cavities, which the source never
    /// shows, and a question about them).
    pub fn target(name: &str) -> Option<Self> {
        let s = Self::source();
        Some(match name {
            "scanner-b" => Self {
                name: name.into(),
                contrast: 0.6,
                noise: 10.0,
                blur: 1,
                phrasing: 1,
                ..s
            },
            "inverted" => Self {
                name: name.into(),
                invert: true,
                phrasing: 1,
                ..s
            },
            "lowres" => Self {
                name: name.into(),
                size: 32,
                ..s
            },
            "new-finding" => Self {
                name: name.into(),
                cavity: true,
                ..s
            },
            "source" => s,
            _ => return None,
        })
    }

    /// [`Domain::target`], or an error naming the unknown domain and the known ones.
    pub fn named(name: &str) -> crate::Result<Self> {
        Self::target(name).ok_or_else(|| {
            crate::Error::Input(format!(
                "unknown domain `{name}` (expected one of {})",
                Self::NAMES.join(", ")
            ))
        })
    }

    /// Every domain name.
    pub const NAMES: [&'static str; 5] =
        ["source", "scanner-b", "inverted", "lowres", "new-finding"];
}

/// SplitMix64.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x5DEE_CE66_D1CE_5EED)
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
    fn chance(&mut self, p: f32) -> bool {
        self.unit() < p
    }
    fn side(&mut self) -> Side {
        if self.chance(0.5) {
            Side::Left
        } else {
            Side::Right
        }
    }
    fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.unit()
    }
    /// Roughly normal (sum of uniforms), mean 0, std 1.
    fn normal(&mut self) -> f32 {
        (0..4).map(|_| self.unit()).sum::<f32>() * 1.732 - 3.464
    }
}

/// Draws a scene; each finding present with probability ½ (nodule count 0–3 uniform), so that
/// no answer can be guessed from the question alone. `cavity` draws the new finding too.
pub fn sample_scene(rng: &mut Rng, cavity: bool) -> Scene {
    let modality = if rng.chance(0.5) {
        Modality::XRay
    } else {
        Modality::Ct
    };
    let n = (rng.unit() * 4.0) as usize;
    let large_nodules = rng.chance(0.5);
    let r = if large_nodules { 0.05 } else { 0.03 };
    let cardiomegaly = rng.chance(0.5);
    let effusion = rng.chance(0.5).then(|| rng.side());
    let pneumothorax = rng.chance(0.5).then(|| rng.side());
    // Each lung has three spots apart from each other and from the cavity, taken in a random
    // order: nodules never touch, so they can be counted.
    const SPOTS: [(f32, f32); 3] = [(0.3, 0.15), (0.7, 0.3), (0.35, 0.48)];
    let mut order = [[0usize, 1, 2], [0, 1, 2]];
    for o in &mut order {
        for i in (1..3).rev() {
            let j = (rng.unit() * (i + 1) as f32) as usize;
            o.swap(i, j.min(i));
        }
    }
    let mut used = [0usize; 2];
    let nodules: Vec<(Side, f32, f32, f32)> = (0..n)
        .map(|_| {
            let side = rng.side();
            let k = if side == Side::Left { 0 } else { 1 };
            let (x, y) = SPOTS[order[k][used[k]]];
            used[k] += 1;
            (
                side,
                x + rng.range(-0.02, 0.02),
                y + rng.range(-0.02, 0.02),
                r * rng.range(0.9, 1.1),
            )
        })
        .collect();
    Scene {
        modality,
        cardiomegaly,
        effusion,
        pneumothorax,
        nodules,
        large_nodules,
        pacemaker: rng.chance(0.5),
        cavity: if cavity && rng.chance(0.5) {
            Some(rng.side())
        } else {
            None
        },
    }
}

/// The lung box of a side in relative image coordinates: (x0, y0, x1, y1).
fn lung_box(side: Side, modality: Modality) -> (f32, f32, f32, f32) {
    match (modality, side) {
        // Patient's right lung is on the image's left.
        (Modality::XRay, Side::Right) => (0.14, 0.16, 0.46, 0.84),
        (Modality::XRay, Side::Left) => (0.54, 0.16, 0.86, 0.84),
        (Modality::Ct, Side::Right) => (0.14, 0.26, 0.46, 0.72),
        (Modality::Ct, Side::Left) => (0.54, 0.26, 0.86, 0.72),
    }
}

fn inside(x: f32, y: f32, cx: f32, cy: f32, rx: f32, ry: f32) -> bool {
    let (dx, dy) = ((x - cx) / rx, (y - cy) / ry);
    dx * dx + dy * dy <= 1.0
}

/// The tissue value at (x, y) in relative coordinates: air 20, soft tissue 120, lung 55 (X-ray)
/// or 30 (CT), heart / fluid 175 (X-ray) or 150 (CT), nodules 190, bone 230, device 245.
fn tissue(scene: &Scene, x: f32, y: f32) -> f32 {
    let ct = scene.modality == Modality::Ct;
    let mut v = 20.0;
    let body = if ct {
        inside(x, y, 0.5, 0.5, 0.46, 0.34)
    } else {
        inside(x, y, 0.5, 0.52, 0.46, 0.5)
    };
    if body {
        v = 120.0;
    }
    let (lung, fluid) = if ct { (30.0, 150.0) } else { (55.0, 175.0) };
    for side in [Side::Right, Side::Left] {
        let (x0, y0, x1, y1) = lung_box(side, scene.modality);
        let (cx, cy, rx, ry) = (
            (x0 + x1) / 2.0,
            (y0 + y1) / 2.0,
            (x1 - x0) / 2.0,
            (y1 - y0) / 2.0,
        );
        if !inside(x, y, cx, cy, rx, ry) {
            continue;
        }
        v = lung;
        let rel_y = (y - y0) / (y1 - y0);
        // Fluid collects at the base (X-ray) or posteriorly, at the bottom of an axial slice.
        if scene.effusion == Some(side) && rel_y > 0.72 {
            v = fluid;
        }
        // Pneumothorax: structureless black air at the lateral apex (X-ray) or anteriorly (CT).
        let lateral = if side == Side::Right {
            x < cx - 0.35 * rx
        } else {
            x > cx + 0.35 * rx
        };
        let ptx = if ct {
            rel_y < 0.28
        } else {
            lateral && rel_y < 0.55
        };
        if scene.pneumothorax == Some(side) && ptx {
            v = 4.0;
        }
    }
    if ct {
        // Heart anteriorly, slightly to the patient's left; spine posteriorly.
        let heart_rx = if scene.cardiomegaly { 0.2 } else { 0.12 };
        if inside(x, y, 0.55, 0.36, heart_rx, 0.1) {
            v = 150.0;
        }
        if inside(x, y, 0.5, 0.76, 0.06, 0.06) {
            v = 230.0;
        }
        if scene.pacemaker && (0.66..0.76).contains(&x) && (0.2..0.25).contains(&y) {
            v = 245.0;
        }
    } else {
        // Heart: centred slightly to the patient's left (image right), lower mediastinum.
        let heart_rx = if scene.cardiomegaly { 0.21 } else { 0.13 };
        if inside(x, y, 0.55, 0.66, heart_rx, 0.15) {
            v = 175.0;
        }
        if scene.pacemaker && (0.66..0.76).contains(&x) && (0.08..0.14).contains(&y) {
            v = 245.0;
        }
    }
    // Lesions last: never hidden behind the heart, so the image always answers the question.
    for side in [Side::Right, Side::Left] {
        let (x0, y0, x1, y1) = lung_box(side, scene.modality);
        for &(ns, nx, ny, nr) in &scene.nodules {
            if ns == side && inside(x, y, x0 + nx * (x1 - x0), y0 + ny * (y1 - y0), nr, nr) {
                v = 190.0;
            }
        }
        // A cavity: a thick bright wall around air, low in the lung, below the nodules.
        if scene.cavity == Some(side) {
            let (cx, cy) = (x0 + 0.7 * (x1 - x0), y0 + 0.68 * (y1 - y0));
            if inside(x, y, cx, cy, 0.07, 0.07) {
                v = if inside(x, y, cx, cy, 0.035, 0.035) {
                    4.0
                } else {
                    200.0
                };
            }
        }
    }
    v
}

/// Renders a scene as an 8-bit grey image in the domain's style.
pub fn render(scene: &Scene, domain: &Domain, rng: &mut Rng) -> GrayImage {
    let n = domain.size as usize;
    let s = domain.size as f32;
    let mut clean = vec![0.0f32; n * n];
    for py in 0..n {
        for px in 0..n {
            clean[py * n + px] = tissue(scene, (px as f32 + 0.5) / s, (py as f32 + 0.5) / s);
        }
    }
    if domain.blur > 0 {
        let r = domain.blur as isize;
        let src = clean.clone();
        for py in 0..n as isize {
            for px in 0..n as isize {
                let (mut sum, mut k) = (0.0, 0.0);
                for dy in -r..=r {
                    for dx in -r..=r {
                        let (x, y) = (px + dx, py + dy);
                        if (0..n as isize).contains(&x) && (0..n as isize).contains(&y) {
                            sum += src[y as usize * n + x as usize];
                            k += 1.0;
                        }
                    }
                }
                clean[py as usize * n + px as usize] = sum / k;
            }
        }
    }
    let mut img = GrayImage::new(domain.size, domain.size);
    for py in 0..n {
        for px in 0..n {
            let v = clean[py * n + px];
            let mut g = 128.0 + (v - 128.0) * domain.contrast + domain.noise * rng.normal();
            if domain.invert {
                g = 255.0 - g;
            }
            img.put_pixel(
                px as u32,
                py as u32,
                Luma([g.round().clamp(0.0, 255.0) as u8]),
            );
        }
    }
    img
}

/// One question about a scene.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Question {
    /// Which template (stable across phrasings), e.g. `effusion`.
    pub kind: String,
    /// The question text.
    pub question: String,
    /// The answer, as the scene makes it.
    pub answer: String,
    /// `CLOSED` (yes/no) or `OPEN`.
    pub answer_type: String,
}

/// Every question the scene answers, in the domain's phrasing.
pub fn questions(scene: &Scene, domain: &Domain) -> Vec<Question> {
    let p = domain.phrasing;
    let yn = |b: bool| if b { "yes" } else { "no" }.to_string();
    let q = |kind: &str, texts: [&str; 2], answer: String, closed: bool| Question {
        kind: kind.into(),
        question: texts[p.min(1)].into(),
        answer,
        answer_type: if closed { "CLOSED" } else { "OPEN" }.into(),
    };
    let mut out = vec![
        q(
            "modality",
            ["what is the imaging modality?", "which modality was used?"],
            scene.modality.word().into(),
            false,
        ),
        q(
            "effusion",
            [
                "is there a pleural effusion?",
                "do you see fluid in the pleural space?",
            ],
            yn(scene.effusion.is_some()),
            true,
        ),
        q(
            "cardiomegaly",
            ["is the heart enlarged?", "is there cardiomegaly?"],
            yn(scene.cardiomegaly),
            true,
        ),
        q(
            "pneumothorax",
            ["is there a pneumothorax?", "is any lung collapsed?"],
            yn(scene.pneumothorax.is_some()),
            true,
        ),
        q(
            "pacemaker",
            ["is there a pacemaker?", "is a cardiac device present?"],
            yn(scene.pacemaker),
            true,
        ),
        q(
            "nodules",
            [
                "how many nodules are there?",
                "what is the number of lung nodules?",
            ],
            scene.nodules.len().to_string(),
            false,
        ),
    ];
    if !scene.nodules.is_empty() {
        out.push(q(
            "nodule_size",
            [
                "how big are the nodules?",
                "what size are the lung nodules?",
            ],
            if scene.large_nodules {
                "large"
            } else {
                "small"
            }
            .into(),
            false,
        ));
    }
    if domain.cavity {
        out.push(q(
            "cavity",
            [
                "is there a cavitating lesion?",
                "is there a cavitating lesion?",
            ],
            yn(scene.cavity.is_some()),
            true,
        ));
    }
    if let Some(side) = scene.effusion {
        out.push(q(
            "effusion_side",
            [
                "which side is the effusion on?",
                "on which side is the pleural fluid?",
            ],
            side.word().into(),
            false,
        ));
    }
    if let Some(side) = scene.pneumothorax {
        out.push(q(
            "pneumothorax_side",
            [
                "which side is the pneumothorax on?",
                "which lung is collapsed?",
            ],
            side.word().into(),
            false,
        ));
    }
    out
}

/// A short template report of the scene.
pub fn report(scene: &Scene) -> String {
    let mut s = Vec::new();
    s.push(
        match scene.modality {
            Modality::XRay => "frontal chest x-ray.",
            Modality::Ct => "axial ct of the chest.",
        }
        .to_string(),
    );
    s.push(
        if scene.cardiomegaly {
            "the heart is enlarged."
        } else {
            "the heart size is normal."
        }
        .to_string(),
    );
    match scene.effusion {
        Some(side) => s.push(format!("there is a {} pleural effusion.", side.word())),
        None => s.push("no pleural effusion.".into()),
    }
    match scene.pneumothorax {
        Some(side) => s.push(format!("there is a {} pneumothorax.", side.word())),
        None => s.push("no pneumothorax.".into()),
    }
    match scene.nodules.len() {
        0 => s.push("no nodules.".into()),
        1 => s.push(format!(
            "there is one {} nodule.",
            if scene.large_nodules {
                "large"
            } else {
                "small"
            }
        )),
        n => s.push(format!(
            "there are {n} {} nodules.",
            if scene.large_nodules {
                "large"
            } else {
                "small"
            }
        )),
    }
    if let Some(side) = scene.cavity {
        s.push(format!("a cavitating lesion in the {} lung.", side.word()));
    }
    if scene.pacemaker {
        s.push("a pacemaker is present.".into());
    }
    s.join(" ")
}

/// One generated study.
#[derive(Debug, Clone)]
pub struct Study {
    /// Study id (`<domain>-s<seed>-<index>`: unique across splits drawn with different seeds).
    pub id: String,
    /// The scene.
    pub scene: Scene,
    /// The image.
    pub image: GrayImage,
    /// Its questions.
    pub questions: Vec<Question>,
    /// Its report.
    pub report: String,
}

/// `n` studies of a domain, deterministic from `seed` (study `i` depends only on seed, domain and i).
pub fn generate(domain: &Domain, n: usize, seed: u64) -> Vec<Study> {
    let salt = domain
        .name
        .bytes()
        .fold(0u64, |h, b| h.wrapping_mul(131).wrapping_add(b as u64));
    (0..n)
        .map(|i| {
            let mut rng = Rng::new(
                seed ^ salt.wrapping_mul(0x9E37_79B9)
                    ^ (i as u64).wrapping_mul(0xA24B_AED4_963E_E407),
            );
            let scene = sample_scene(&mut rng, domain.cavity);
            let image = render(&scene, domain, &mut rng);
            Study {
                id: format!("{}-s{seed}-{i}", domain.name),
                questions: questions(&scene, domain),
                report: report(&scene),
                image,
                scene,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_seed_dependent() {
        let d = Domain::source();
        let a = generate(&d, 5, 1);
        let b = generate(&d, 5, 1);
        let c = generate(&d, 5, 2);
        for i in 0..5 {
            assert_eq!(a[i].image, b[i].image);
            assert_eq!(a[i].questions, b[i].questions);
        }
        assert!((0..5).any(|i| a[i].image != c[i].image));
        // Study i does not depend on how many are generated.
        assert_eq!(generate(&d, 2, 1)[1].image, a[1].image);
    }

    #[test]
    fn a_question_only_baseline_stays_near_chance() {
        // For every question wording, the most frequent answer is right at most ~55% of the
        // time (the nodule count has four answers), so only the image can answer it.
        for name in Domain::NAMES {
            let d = Domain::target(name).unwrap();
            let mut by_q: std::collections::BTreeMap<
                String,
                std::collections::BTreeMap<String, usize>,
            > = Default::default();
            for s in generate(&d, 2000, 7) {
                for q in s.questions {
                    *by_q
                        .entry(q.question)
                        .or_default()
                        .entry(q.answer)
                        .or_default() += 1;
                }
            }
            for (q, answers) in by_q {
                let total: usize = answers.values().sum();
                let top = *answers.values().max().unwrap();
                let rate = top as f64 / total as f64;
                let chance = 1.0 / answers.len() as f64;
                assert!(
                    rate < chance + 0.05,
                    "{name}: `{q}` majority answer {rate:.3} (chance {chance:.3})"
                );
            }
        }
    }

    #[test]
    fn the_image_shows_what_the_answers_say() {
        // Counterfactual renderings without noise: changing one fact of a scene must change the
        // image where that fact lives (the named side for side questions), and never be hidden.
        let d = Domain {
            noise: 0.0,
            cavity: true,
            ..Domain::source()
        };
        let draw = |sc: &Scene| render(sc, &d, &mut Rng::new(0));
        // Pixels that differ, as (count, count in the image's left half, in its right half).
        let diff = |a: &GrayImage, b: &GrayImage| {
            let (mut n, mut l, mut r) = (0, 0, 0);
            for (x, y, p) in a.enumerate_pixels() {
                if p != b.get_pixel(x, y) {
                    n += 1;
                    if x < a.width() / 2 {
                        l += 1;
                    } else {
                        r += 1;
                    }
                }
            }
            (n, l, r)
        };
        let bright = |img: &GrayImage, t: u8| img.pixels().filter(|p| p[0] >= t).count();
        let mut modalities = [0, 0];
        for s in generate(&d, 300, 3) {
            let sc = &s.scene;
            modalities[(sc.modality == Modality::Ct) as usize] += 1;
            let base = draw(sc);
            assert_eq!(base, s.image, "{}", s.id);
            for side in [Side::Left, Side::Right] {
                // Patient's left is the image's right.
                let on_side = |(n, l, r): (u32, u32, u32)| {
                    n >= 4
                        && if side == Side::Left {
                            r == n && l == 0
                        } else {
                            l == n && r == 0
                        }
                };
                let with = |f: &dyn Fn(&mut Scene)| {
                    let mut c = sc.clone();
                    f(&mut c);
                    draw(&c)
                };
                let none_e = with(&|c| c.effusion = None);
                let some_e = with(&|c| c.effusion = Some(side));
                assert!(
                    on_side(diff(&none_e, &some_e)),
                    "{}: effusion {side:?}",
                    s.id
                );
                let none_p = with(&|c| c.pneumothorax = None);
                let some_p = with(&|c| c.pneumothorax = Some(side));
                assert!(
                    on_side(diff(&none_p, &some_p)),
                    "{}: pneumothorax {side:?}",
                    s.id
                );
                let none_c = with(&|c| c.cavity = None);
                let some_c = with(&|c| c.cavity = Some(side));
                assert!(on_side(diff(&none_c, &some_c)), "{}: cavity {side:?}", s.id);
            }
            let mut c = sc.clone();
            c.cardiomegaly = !sc.cardiomegaly;
            let (big, small) = if sc.cardiomegaly {
                (&base, &draw(&c))
            } else {
                (&draw(&c), &base)
            };
            assert!(bright(big, 140) > bright(small, 140) + 8, "{}: heart", s.id);
            c = sc.clone();
            c.pacemaker = !sc.pacemaker;
            assert!(diff(&base, &draw(&c)).0 >= 4, "{}: pacemaker", s.id);
            assert_eq!(bright(&base, 245) > 0, sc.pacemaker, "{}: pacemaker", s.id);
            // Every nodule shows: removing any one changes the image, and nodules never touch
            // (each removal changes a disjoint set of pixels).
            let mut changed = std::collections::HashSet::new();
            for k in 0..sc.nodules.len() {
                let mut c = sc.clone();
                c.nodules.remove(k);
                let other = draw(&c);
                let px: Vec<(u32, u32)> = base
                    .enumerate_pixels()
                    .filter(|(x, y, p)| *p != other.get_pixel(*x, *y))
                    .map(|(x, y, _)| (x, y))
                    .collect();
                assert!(px.len() >= 4, "{}: nodule {k} hidden", s.id);
                for p in px {
                    assert!(changed.insert(p), "{}: nodules touch", s.id);
                }
            }
            if !sc.nodules.is_empty() {
                c = sc.clone();
                c.large_nodules = !sc.large_nodules;
                for n in &mut c.nodules {
                    n.3 *= if sc.large_nodules { 0.6 } else { 1.0 / 0.6 };
                }
                let (large, small) = if sc.large_nodules {
                    (&base, &draw(&c))
                } else {
                    (&draw(&c), &base)
                };
                assert!(bright(large, 190) > bright(small, 190), "{}: size", s.id);
            }
        }
        assert!(modalities[0] > 100 && modalities[1] > 100, "{modalities:?}");
        let inv = generate(&Domain::target("inverted").unwrap(), 1, 3);
        let src = generate(&Domain::source(), 1, 3);
        let corner = |img: &GrayImage| img.get_pixel(0, 0)[0];
        assert!(corner(&inv[0].image) > 200 && corner(&src[0].image) < 60);
    }

    #[test]
    fn the_source_never_shows_the_new_finding() {
        for s in generate(&Domain::source(), 500, 1) {
            assert!(s.scene.cavity.is_none());
            assert!(s.questions.iter().all(|q| q.kind != "cavity"));
        }
        let n = generate(&Domain::target("new-finding").unwrap(), 500, 1)
            .iter()
            .filter(|s| s.scene.cavity.is_some())
            .count();
        assert!((200..300).contains(&n), "{n}");
    }
}

/// The studies as a dataset folder any normtune verb reads: `images/<id>.png`, `vqa.jsonl`
/// (`id`, `image`, `question`, `answer`, `answer_type`; format `jsonl`), `reports.jsonl`
/// (`id`, `image`, `report`) and `scenes.jsonl` (the ground truth behind both).
pub fn to_files(studies: &[Study]) -> crate::Result<Vec<(String, Vec<u8>)>> {
    to_files_named(studies, "")
}

/// As [`to_files`] with `prefix` before the three JSONL names (`train.vqa.jsonl`, ...), so
/// several splits (drawn with different seeds, hence different image names) share one folder.
pub fn to_files_named(studies: &[Study], prefix: &str) -> crate::Result<Vec<(String, Vec<u8>)>> {
    let mut files = Vec::with_capacity(studies.len() + 3);
    let (mut vqa, mut reports, mut scenes) = (String::new(), String::new(), String::new());
    for s in studies {
        let name = format!("images/{}.png", s.id);
        let mut png = Vec::new();
        image::DynamicImage::ImageLuma8(s.image.clone())
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .map_err(|e| crate::Error::Image {
                file: name.clone(),
                reason: e.to_string(),
            })?;
        files.push((name.clone(), png));
        for (k, q) in s.questions.iter().enumerate() {
            vqa.push_str(
                &serde_json::json!({"id": format!("{}-q{k}", s.id), "image": name, "question": q.question, "answer": q.answer, "answer_type": q.answer_type, "kind": q.kind})
                    .to_string(),
            );
            vqa.push('\n');
        }
        reports.push_str(
            &serde_json::json!({"id": s.id, "image": name, "report": s.report}).to_string(),
        );
        reports.push('\n');
        scenes.push_str(&serde_json::json!({"id": s.id, "scene": s.scene}).to_string());
        scenes.push('\n');
    }
    files.push((format!("{prefix}vqa.jsonl"), vqa.into_bytes()));
    files.push((format!("{prefix}reports.jsonl"), reports.into_bytes()));
    files.push((format!("{prefix}scenes.jsonl"), scenes.into_bytes()));
    Ok(files)
}

/// Seed offset of a demo test split: train and test come from different seeds, so different
/// patients and different images.
pub const TEST_SEED_OFFSET: u64 = 1_000_003;

/// A train split of `studies` and a test split of `test_studies` of `domain` as one dataset
/// folder (`train.vqa.jsonl`, `test.vqa.jsonl`, ... and `images/`): what `normtune demo` and the
/// browser app tune and score on.
pub fn train_test_files(
    domain: &Domain,
    studies: usize,
    test_studies: usize,
    seed: u64,
) -> crate::Result<Vec<(String, Vec<u8>)>> {
    let mut data = to_files_named(&generate(domain, studies, seed), "train.")?;
    data.extend(to_files_named(
        &generate(domain, test_studies, seed + TEST_SEED_OFFSET),
        "test.",
    )?);
    Ok(data)
}
