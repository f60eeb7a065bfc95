//! The `#[provider]` attribute of `exhook-provider` (use it through that crate:
//! `#[exhook_provider::provider]`).
//!
//! A trait cannot tell which of its default methods an `impl` overrode, yet the hooks a
//! provider answers `OnProviderLoaded` with must be exactly the ones it implements: a hook it
//! registers but does not implement costs EMQX a call per event for nothing, and one it
//! implements but does not register is never called. The attribute reads the method names of
//! the `impl Provider for T` block and writes the `HOOKS` constant from them, so the two
//! cannot drift apart. A method that is not a hook of the trait is a compile error naming it.
#![warn(missing_docs)]

use proc_macro::TokenStream;
use quote::quote;
use syn::spanned::Spanned;
use syn::{ImplItem, ItemImpl, parse_macro_input};

/// Method name → `Hook` variant, for every hook EMQX can register. The lifecycle methods and
/// `topics` are allowed in the block but register nothing. `exhook-provider`'s tests check this
/// table against `Hook::hookpoints()` (a proc-macro crate cannot depend on the hook table).
const HOOK_METHODS: [(&str, &str); 19] = [
    ("client_connect", "ClientConnect"),
    ("client_connack", "ClientConnack"),
    ("client_connected", "ClientConnected"),
    ("client_disconnected", "ClientDisconnected"),
    ("client_authenticate", "ClientAuthenticate"),
    ("client_authorize", "ClientAuthorize"),
    ("client_subscribe", "ClientSubscribe"),
    ("client_unsubscribe", "ClientUnsubscribe"),
    ("session_created", "SessionCreated"),
    ("session_subscribed", "SessionSubscribed"),
    ("session_unsubscribed", "SessionUnsubscribed"),
    ("session_resumed", "SessionResumed"),
    ("session_discarded", "SessionDiscarded"),
    ("session_takenover", "SessionTakenover"),
    ("session_terminated", "SessionTerminated"),
    ("message_publish", "MessagePublish"),
    ("message_delivered", "MessageDelivered"),
    ("message_dropped", "MessageDropped"),
    ("message_acked", "MessageAcked"),
];

/// Trait methods that are not hooks.
const OTHER_METHODS: [&str; 3] = ["provider_loaded", "provider_unloaded", "topics"];

/// Put on an `impl exhook_provider::Provider for T` block: adds `const HOOKS` listing the hooks
/// whose methods the block implements (in the trait's order). Takes no arguments; topic
/// filters come from the provider's `topics()` method.
#[proc_macro_attribute]
pub fn provider(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        let attr = proc_macro2::TokenStream::from(attr);
        return syn::Error::new(
            attr.span(),
            "#[provider] takes no arguments: topic filters come from `fn topics(&self)`",
        )
        .to_compile_error()
        .into();
    }
    let mut block = parse_macro_input!(item as ItemImpl);
    let (variants, error) = hooks_of(&block);
    let hooks = variants.iter().map(|v| {
        let v = syn::Ident::new(v, proc_macro2::Span::call_site());
        quote!(::exhook_provider::Hook::#v)
    });
    // Written even when a method is refused: the error then stands beside rustc's own
    // (which suggests the closest method name), without a spurious "missing HOOKS".
    block.items.push(syn::parse_quote! {
        const HOOKS: &'static [::exhook_provider::Hook] = &[#(#hooks),*];
    });
    let error = error.map(|e| e.to_compile_error());
    quote!(#error #block).into()
}

/// The hooks implemented, in the trait's order, and what is wrong with the block.
fn hooks_of(block: &ItemImpl) -> (Vec<&'static str>, Option<syn::Error>) {
    let mut found = Vec::new();
    let mut errors: Option<syn::Error> = None;
    if block.trait_.is_none() {
        errors = Some(syn::Error::new(
            block.self_ty.span(),
            "#[provider] goes on `impl exhook_provider::Provider for YourType`",
        ));
    }
    let mut push = |e: syn::Error| match errors.as_mut() {
        Some(all) => all.combine(e),
        None => errors = Some(e),
    };
    for item in &block.items {
        match item {
            ImplItem::Fn(f) => {
                let name = f.sig.ident.to_string();
                if let Some((_, variant)) = HOOK_METHODS.iter().find(|(m, _)| *m == name) {
                    found.push(*variant);
                } else if !OTHER_METHODS.contains(&name.as_str()) {
                    push(syn::Error::new(
                        f.sig.ident.span(),
                        format!(
                            "`{name}` is not a method of exhook_provider::Provider: hooks are {}; \
                             other methods are {}",
                            HOOK_METHODS.map(|(m, _)| m).join(", "),
                            OTHER_METHODS.join(", "),
                        ),
                    ));
                }
            }
            ImplItem::Const(c) if c.ident == "HOOKS" => push(syn::Error::new(
                c.ident.span(),
                "#[provider] writes HOOKS from the methods you implement: remove this constant",
            )),
            _ => {}
        }
    }
    // The trait's order, whatever order the block is written in.
    let hooks = HOOK_METHODS.iter().map(|(_, v)| *v).filter(|v| found.contains(v)).collect();
    (hooks, errors)
}
