//! Chat templates as transformers renders them (`apply_chat_template`, jinja2 with
//! `trim_blocks` and `lstrip_blocks`, `raise_exception`, the tokenizer's special tokens as
//! variables), with minijinja: the Jinja `chat_template` of `tokenizer_config.json`,
//! `chat_template.jinja`, `chat_template.json` or a GGUF file's `tokenizer.chat_template`.
//! Conformance: tests/fixtures/make_conformance.py (LLaVA-1.5, Mistral, Llama-3, ChatML, Qwen2).

use crate::error::{Error, Result};
use crate::tokenizer::SpecialNames;

/// A compiled-on-use chat template and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatTemplate {
    /// The Jinja source, transformers' `{% generation %}` tags removed.
    pub source: String,
    /// The file it was read from (for errors).
    pub file: String,
}

impl ChatTemplate {
    /// A template read from `file`. transformers' `{% generation %}` … `{% endgeneration %}`
    /// only marks assistant text for masks; it renders its body unchanged, so the tags go.
    pub fn new(source: &str, file: &str) -> Self {
        let tag =
            regex_lite::Regex::new(r"\{%-?\s*(end)?generation\s*-?%\}").expect("static regex");
        Self {
            source: tag.replace_all(source, "").into_owned(),
            file: file.to_string(),
        }
    }

    /// Whether the template reads typed content parts (`{"type": "image"}`, …) as multimodal
    /// templates do; text-only templates (most GGUF files') print `content` as a string.
    pub fn takes_parts(&self) -> bool {
        self.source.contains("'type'")
            || self.source.contains("\"type\"")
            || self.source.contains(".type")
    }

    /// The prompt for one user turn holding an image and `question`, with the generation
    /// prompt, as `processor.apply_chat_template(messages, add_generation_prompt=True)` gives
    /// it. Text-only templates get the content `"<image>\n{question}"` (transformers would
    /// print the parts list).
    pub fn render_question(
        &self,
        question: &str,
        image_token: &str,
        special: &SpecialNames,
    ) -> Result<String> {
        let messages = serde_json::json!([{"role": "user", "content": self.content(question, Some(image_token))}]);
        self.render(&messages, true, special)
    }

    /// A message's `content` as this template reads it: typed parts (an image part first when
    /// `image` is given) for multimodal templates, else a string (`"<image>\n{text}"` with an
    /// image).
    pub fn content(&self, text: &str, image: Option<&str>) -> serde_json::Value {
        match (self.takes_parts(), image) {
            (true, Some(_)) => {
                serde_json::json!([{"type": "image"}, {"type": "text", "text": text}])
            }
            (true, None) => serde_json::json!([{"type": "text", "text": text}]),
            (false, Some(image)) => serde_json::json!(format!("{image}\n{text}")),
            (false, None) => serde_json::json!(text),
        }
    }

    /// Renders `messages` (transformers' conversation JSON).
    pub fn render(
        &self,
        messages: &serde_json::Value,
        add_generation_prompt: bool,
        special: &SpecialNames,
    ) -> Result<String> {
        let bad = |e: minijinja::Error| Error::config(&self.file, "chat_template", one_line(&e));
        let mut env = minijinja::Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |msg: String| -> std::result::Result<String, minijinja::Error> {
                Err(minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    msg,
                ))
            },
        );
        // A fixed date: templates that print today's date would make prompts differ run to run.
        env.add_function("strftime_now", |_fmt: String| "26 Jul 2024".to_string());
        let tpl = env.template_from_str(&self.source).map_err(bad)?;
        let s = special;
        let ctx = serde_json::json!({
            "messages": messages,
            "add_generation_prompt": add_generation_prompt,
            "bos_token": s.bos, "eos_token": s.eos, "unk_token": s.unk, "pad_token": s.pad,
            "sep_token": s.sep, "cls_token": s.cls, "mask_token": s.mask,
            "tools": null, "documents": null,
        });
        tpl.render(ctx).map_err(bad)
    }
}

/// A minijinja error in one line (its detail names the template line).
fn one_line(e: &minijinja::Error) -> String {
    let mut s = e.to_string();
    if let Some(line) = e.line() {
        s.push_str(&format!(" (template line {line})"));
    }
    s.replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_python_methods_namespaces_and_generation_tags() {
        let t = ChatTemplate::new(
            "{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}\
             {{ m['role'].upper() }}: {% for c in m['content'] | selectattr('type', 'equalto', 'text') %}\
             {% generation %}{{ c['text'] | trim }}{% endgeneration %}{% endfor %}\n{% endfor %}\
             {% if add_generation_prompt %}{{ bos_token }}#{{ ns.n }}{% endif %}",
            "t",
        );
        let special = SpecialNames {
            bos: Some("<s>".into()),
            ..SpecialNames::default()
        };
        let out = t.render_question(" hi ", "<image>", &special).unwrap();
        // transformers' `render_jinja_template` gives the same (trim_blocks eats the newline
        // after `{% endfor %}`).
        assert_eq!(out, "USER: hi<s>#1");
    }

    #[test]
    fn a_text_only_template_gets_the_image_in_the_content_string() {
        // SmolLM2's ChatML (its GGUF's tokenizer.chat_template, system turn left out).
        let t = ChatTemplate::new(
            "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + \
             message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}\
             {{ '<|im_start|>assistant\\n' }}{% endif %}",
            "gguf",
        );
        assert!(!t.takes_parts());
        // transformers' `render_jinja_template` on content "<image>\nq?" gives the same.
        let out = t
            .render_question("q?", "<image>", &SpecialNames::default())
            .unwrap();
        assert_eq!(
            out,
            "<|im_start|>user\n<image>\nq?<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn raise_exception_is_an_error_naming_the_file() {
        let t = ChatTemplate::new(
            "{{ raise_exception('only user turns') }}",
            "chat_template.jinja",
        );
        let e = t
            .render_question("q", "<image>", &SpecialNames::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("chat_template.jinja") && e.contains("only user turns"),
            "{e}"
        );
    }
}
