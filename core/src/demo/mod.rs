//! The built-in benchmark: procedurally drawn chest-radiograph-like images with Med-VQA questions
//! and template reports whose answers follow from the drawn scene, deterministic from a seed.
//! A source domain (for pre-training) and shifted target domains (another "scanner": contrast,
//! noise, inverted polarity, resolution; new question phrasings) mirror the papers' setting of
//! adapting a pretrained Med-VLP model to a new task with little data.
//!
//! Radiological convention: the patient's left is on the image's right.

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

/// What a scene contains.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scene {
    /// Cardiothoracic ratio > 0.5.
    pub cardiomegaly: bool,
    /// Pleural effusion and its side.
    pub effusion: Option<Side>,
    /// Pneumothorax and its side.
    pub pneumothorax: Option<Side>,
    /// Nodules: side, centre (relative to the lung box, 0..1) and radius (fraction of width).
    pub nodules: Vec<(Side, f32, f32, f32)>,
    /// A pacemaker projected over the left upper chest.
    pub pacemaker: bool,
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
        }
    }

    /// A shifted target domain by name: `scanner-b` (low contrast, more noise, new phrasing),
    /// `inverted` (inverted polarity, new phrasing), `lowres` (half resolution, upsampled).
    pub fn target(name: &str) -> Option<Self> {
        let s = Self::source();
        Some(match name {
            "scanner-b" => Self {
                name: name.into(),
                contrast: 0.6,
                noise: 10.0,
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
            "source" => s,
            _ => return None,
        })
    }

    /// Every domain name.
    pub const NAMES: [&'static str; 4] = ["source", "scanner-b", "inverted", "lowres"];
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
/// no answer can be guessed from the question alone.
pub fn sample_scene(rng: &mut Rng) -> Scene {
    let n = (rng.unit() * 4.0) as usize;
    Scene {
        cardiomegaly: rng.chance(0.5),
        effusion: rng.chance(0.5).then(|| rng.side()),
        pneumothorax: rng.chance(0.5).then(|| rng.side()),
        nodules: (0..n)
            .map(|_| {
                (
                    rng.side(),
                    rng.range(0.25, 0.75),
                    rng.range(0.10, 0.45),
                    rng.range(0.035, 0.05),
                )
            })
            .collect(),
        pacemaker: rng.chance(0.5),
    }
}

/// The lung box of a side in relative image coordinates: (x0, y0, x1, y1).
fn lung_box(side: Side) -> (f32, f32, f32, f32) {
    match side {
        // Patient's right lung is on the image's left.
        Side::Right => (0.14, 0.16, 0.46, 0.84),
        Side::Left => (0.54, 0.16, 0.86, 0.84),
    }
}

/// Renders a scene as an 8-bit grey image in the domain's style.
pub fn render(scene: &Scene, domain: &Domain, rng: &mut Rng) -> GrayImage {
    let s = domain.size as f32;
    let mut img = GrayImage::new(domain.size, domain.size);
    let inside = |x: f32, y: f32, cx: f32, cy: f32, rx: f32, ry: f32| {
        let (dx, dy) = ((x - cx) / rx, (y - cy) / ry);
        dx * dx + dy * dy <= 1.0
    };
    let heart_rx = if scene.cardiomegaly { 0.21 } else { 0.13 };
    for py in 0..domain.size {
        for px in 0..domain.size {
            let (x, y) = ((px as f32 + 0.5) / s, (py as f32 + 0.5) / s);
            // Air 20, soft tissue 120, lung 55, heart / fluid 175, device 245.
            let mut v = 20.0;
            if inside(x, y, 0.5, 0.52, 0.46, 0.5) {
                v = 120.0;
            }
            for side in [Side::Right, Side::Left] {
                let (x0, y0, x1, y1) = lung_box(side);
                let (cx, cy, rx, ry) = (
                    (x0 + x1) / 2.0,
                    (y0 + y1) / 2.0,
                    (x1 - x0) / 2.0,
                    (y1 - y0) / 2.0,
                );
                if inside(x, y, cx, cy, rx, ry) {
                    v = 55.0;
                    let rel_y = (y - y0) / (y1 - y0);
                    if scene.effusion == Some(side) && rel_y > 0.75 {
                        v = 175.0;
                    }
                    // Pneumothorax: a black, structureless crescent at the lateral apex.
                    let lateral = if side == Side::Right {
                        x < cx - 0.35 * rx
                    } else {
                        x > cx + 0.35 * rx
                    };
                    if scene.pneumothorax == Some(side) && lateral && rel_y < 0.55 {
                        v = 8.0;
                    }
                    for &(ns, nx, ny, nr) in &scene.nodules {
                        if ns == side
                            && inside(x, y, x0 + nx * (x1 - x0), y0 + ny * (y1 - y0), nr, nr)
                        {
                            v = 190.0;
                        }
                    }
                }
            }
            // Heart: centred slightly to the patient's left (image right), lower mediastinum.
            if inside(x, y, 0.55, 0.66, heart_rx, 0.15) {
                v = 175.0;
            }
            if scene.pacemaker && (0.66..0.76).contains(&x) && (0.08..0.14).contains(&y) {
                v = 245.0;
            }
            let mut g = 128.0 + (v - 128.0) * domain.contrast + domain.noise * rng.normal();
            if domain.invert {
                g = 255.0 - g;
            }
            img.put_pixel(px, py, Luma([g.round().clamp(0.0, 255.0) as u8]));
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
        1 => s.push("there is one nodule.".into()),
        n => s.push(format!("there are {n} nodules.")),
    }
    if scene.pacemaker {
        s.push("a pacemaker is present.".into());
    }
    s.join(" ")
}

/// One generated study.
#[derive(Debug, Clone)]
pub struct Study {
    /// Study id (`<domain>-<index>`).
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
            let scene = sample_scene(&mut rng);
            let image = render(&scene, domain, &mut rng);
            Study {
                id: format!("{}-{i}", domain.name),
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
        // Fluid is bright in the lower third of the named lung; the pacemaker's corner is the
        // brightest thing in the image; an enlarged heart widens the bright mediastinum.
        let d = Domain {
            noise: 0.0,
            ..Domain::source()
        };
        let mean = |img: &GrayImage, x0: f32, y0: f32, x1: f32, y1: f32| {
            let s = img.width() as f32;
            let mut sum = 0.0;
            let mut n = 0.0;
            for y in (y0 * s) as u32..(y1 * s) as u32 {
                for x in (x0 * s) as u32..(x1 * s) as u32 {
                    sum += img.get_pixel(x, y)[0] as f32;
                    n += 1.0;
                }
            }
            sum / n
        };
        for s in generate(&d, 200, 3) {
            for side in [Side::Left, Side::Right] {
                // The lateral lung base, clear of the heart.
                let (lx0, lx1) = match side {
                    Side::Left => (0.78, 0.82),
                    Side::Right => (0.18, 0.22),
                };
                let base = mean(&s.image, lx0, 0.70, lx1, 0.74);
                assert_eq!(
                    base > 150.0,
                    s.scene.effusion == Some(side),
                    "{}: effusion {side:?}",
                    s.id
                );
            }
            let device = mean(&s.image, 0.67, 0.09, 0.75, 0.13);
            assert_eq!(device > 240.0, s.scene.pacemaker, "{}", s.id);
            let heart_edge = mean(&s.image, 0.70, 0.60, 0.72, 0.64);
            assert_eq!(heart_edge > 150.0, s.scene.cardiomegaly, "{}", s.id);
        }
        let inv = generate(&Domain::target("inverted").unwrap(), 1, 3);
        let src = generate(&Domain::source(), 1, 3);
        assert!(
            mean(&inv[0].image, 0.0, 0.0, 0.05, 0.05) > 200.0
                && mean(&src[0].image, 0.0, 0.0, 0.05, 0.05) < 60.0
        );
    }
}

/// The studies as a dataset folder any normtune verb reads: `images/<id>.png`, `vqa.jsonl`
/// (`id`, `image`, `question`, `answer`, `answer_type`; format `jsonl`), `reports.jsonl`
/// (`id`, `image`, `report`) and `scenes.jsonl` (the ground truth behind both).
pub fn to_files(studies: &[Study]) -> crate::Result<Vec<(String, Vec<u8>)>> {
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
    files.push(("vqa.jsonl".into(), vqa.into_bytes()));
    files.push(("reports.jsonl".into(), reports.into_bytes()));
    files.push(("scenes.jsonl".into(), scenes.into_bytes()));
    Ok(files)
}
