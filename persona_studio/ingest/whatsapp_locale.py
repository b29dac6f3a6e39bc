"""What WhatsApp writes instead of speech, in the languages its exports come in.

A phone exports in its own language: media placeholders, deleted-message notes, missed calls,
edit marks and the end-to-end encryption notice are all localised. None of it is something a
person said, so none of it may become training text. Languages covered: en, de, es, fr, pt,
it, nl, ru, cs, zh, ja, ar (plus the language-neutral shapes: attachment file names, `null`
for view-once media, map links).
"""

from __future__ import annotations

import re

from persona_studio.ingest.base import Kind

# Whole first line of a message (compared casefolded, trailing "." ignored).
OMITTED: dict[str, Kind] = {}
for _kind, _phrases in {
    "file": [
        "<Media omitted>", "<Medien ausgeschlossen>", "<Medien weggelassen>", "<Multimedia omitido>",
        "<Multimedia omitidos>", "<Archivo omitido>", "<Médias omis>", "<Fichier omis>", "<Mídia oculta>",
        "<Arquivo de mídia oculto>", "<Multimédia omitido>", "<Media omessi>", "<Media weggelaten>",
        "<Без медиафайлов>", "<Медиафайл пропущен>", "<Média vynechána>", "<媒体文件已忽略>",
        "<省略影音内容>", "<省略影音內容>", "<省略多媒体文件>", "<メディアは含まれていません>", "<メディアなし>",
        "<تم استبعاد الوسائط>", "<الوسائط محذوفة>",
        "document omitted", "Dokument weggelassen", "documento omitido", "document omis", "documento omesso",
        "document weggelaten", "документ отсутствует", "dokument vynechán", "文档已忽略", "文件已忽略",
        "ドキュメントは含まれていません", "تم استبعاد المستند",
    ],
    "image": [
        "image omitted", "Bild weggelassen", "imagen omitida", "image absente", "image omise", "imagem ocultada",
        "imagem omitida", "immagine omessa", "afbeelding weggelaten", "изображение отсутствует",
        "obrázek vynechán", "图片已忽略", "图片已省略", "圖片已略去", "画像は含まれていません", "画像を省略しました",
        "تم استبعاد الصورة", "الصورة محذوفة",
    ],
    "video": [
        "video omitted", "Video weggelassen", "video omitido", "vídeo omitido", "vidéo absente", "vidéo omise",
        "vídeo ocultado", "video omesso", "video weggelaten", "видео отсутствует", "video vynecháno",
        "视频已忽略", "影片已略去", "動画は含まれていません", "تم استبعاد الفيديو",
    ],
    "voice": [
        "audio omitted", "Audio weggelassen", "audio omitido", "audio omis", "áudio ocultado", "áudio omitido",
        "audio omesso", "audio weggelaten", "аудиофайл отсутствует", "аудио отсутствует", "zvuk vynechán",
        "音频已忽略", "語音已略去", "音声は含まれていません", "تم استبعاد الصوت",
        "View once voice message omitted",
    ],
    "sticker": [
        "sticker omitted", "GIF omitted", "Sticker weggelassen", "GIF weggelassen", "sticker omitido",
        "GIF omitido", "sticker omis", "GIF retiré", "GIF omis", "figurinha omitida", "sticker omesso",
        "GIF omessa", "GIF omesso", "sticker weggelaten", "GIF weggelaten", "стикер отсутствует",
        "GIF отсутствует", "nálepka vynechána", "GIF vynechán", "贴图已忽略", "动图已忽略", "貼圖已略去",
        "スタンプは含まれていません", "GIFは含まれていません", "تم استبعاد الملصق",
    ],
    "other": [
        "Contact card omitted", "Kontaktkarte weggelassen", "tarjeta de contacto omitida", "fiche contact omise",
        "cartão de contato omitido", "scheda contatto omessa", "contactkaart weggelaten",
        "карточка контакта отсутствует", "kontakt vynechán", "联系人名片已忽略", "連絡先カードは含まれていません",
        "تم استبعاد بطاقة جهة الاتصال", "null",  # `null`: view-once media
    ],
}.items():
    for _p in _phrases:
        OMITTED[_p.casefold()] = _kind  # type: ignore[assignment]

# iOS documents carry the file name first: "report.pdf • 3 pages document omitted".
DOCUMENT_ENDINGS = tuple(p for p, k in OMITTED.items() if k == "file" and not p.startswith("<"))

RECALL = {p.casefold() for p in (
    "This message was deleted", "You deleted this message", "This message was deleted by admin",
    "Diese Nachricht wurde gelöscht", "Du hast diese Nachricht gelöscht", "Sie haben diese Nachricht gelöscht",
    "Se eliminó este mensaje", "Eliminaste este mensaje", "Este mensaje fue eliminado",
    "Ce message a été supprimé", "Vous avez supprimé ce message",
    "Esta mensagem foi apagada", "Mensagem apagada", "Você apagou esta mensagem", "Apagou esta mensagem",
    "Questo messaggio è stato eliminato", "Hai eliminato questo messaggio",
    "Dit bericht is verwijderd", "Je hebt dit bericht verwijderd", "U hebt dit bericht verwijderd",
    "Данное сообщение удалено", "Это сообщение удалено", "Вы удалили данное сообщение", "Вы удалили это сообщение",
    "Tato zpráva byla smazána", "Smazali jste tuto zprávu", "Tuto zprávu jste smazali",
    "此消息已删除", "你删除了此消息", "此訊息已刪除", "你已刪除此訊息",
    "このメッセージは削除されました", "メッセージを削除しました", "あなたはこのメッセージを削除しました",
    "تم حذف هذه الرسالة", "لقد حذفت هذه الرسالة", "حذفت هذه الرسالة",
)}

# Missed calls start the line; some versions add "Tap to call back" and the like.
MISSED_CALL = tuple(p.casefold() for p in (
    "Missed voice call", "Missed video call", "Missed group voice call", "Missed group video call",
    "Verpasster Sprachanruf", "Verpasster Videoanruf", "Verpasster Gruppen",
    "Llamada perdida", "Llamada de voz perdida", "Videollamada perdida",
    "Appel vocal manqué", "Appel vidéo manqué", "Appel manqué",
    "Chamada de voz perdida", "Chamada de vídeo perdida", "Chamada perdida",
    "Chiamata vocale persa", "Videochiamata persa", "Chiamata persa",
    "Gemiste spraakoproep", "Gemiste video-oproep", "Gemiste oproep",
    "Пропущенный аудиозвонок", "Пропущенный видеозвонок", "Пропущенный звонок",
    "Zmeškaný hlasový hovor", "Zmeškaný videohovor", "Zmeškaný hovor",
    "未接语音通话", "未接视频通话", "未接來電", "語音通話未接", "視訊通話未接",
    "不在着信", "音声通話の不在着信", "ビデオ通話の不在着信",
    "مكالمة صوتية فائتة", "مكالمة فيديو فائتة", "مكالمة فائتة",
))

# "<attached: 00000012-PHOTO-….jpg>" (iOS) in any language: a label, a colon, a file name.
ATTACHED_IOS = re.compile(r"^<(?P<label>[^:：<>]{2,40}?)\s?[:：]\s?(?P<name>[^<>]+\.\w{2,5})>")
# "IMG-20231231-WA0001.jpg (file attached)" (Android) in any language.
ATTACHED_ANDROID = re.compile(r"^(?P<name>\S+\.\w{2,5})\s\((?P<label>[^()]{3,40})\)$")
FILE_KINDS: tuple[tuple[str, Kind], ...] = (
    ("PHOTO", "image"), ("IMG", "image"), ("VIDEO", "video"), ("VID", "video"), ("AUDIO", "voice"),
    ("PTT", "voice"), ("AUD", "voice"), ("STICKER", "sticker"), ("STK", "sticker"), ("GIF", "sticker"),
)

LOCATION = re.compile(
    r"^(?:location|live location|standort|live-standort|ubicación|ubicacion|ubicación en tiempo real|position|"
    r"localisation|localização|localizacao|posizione|locatie|местоположение|геопозиция|poloha|位置|位置信息|"
    r"位置情報|الموقع)\s*[:：]\s*https?://\S+$",
    re.IGNORECASE,
)

# A trailing "<This message was edited>" in the phone's language.
EDITED = re.compile(
    r"\s*[\u200e\u200f]?<(?:[^<>]{0,40}(?:edit|bearbeit|modifi|editad|bewerkt|изменен|upraven|编辑|編輯|編集|تعديل|"
    r"تم تعديل)[^<>]{0,40})>$",
    re.IGNORECASE,
)

# The encryption notice names WhatsApp in every language; the phrase for "end-to-end" does not
# change much. Both must be there, so a person asking "is this end-to-end encrypted?" stays speech.
E2E = re.compile(
    r"end-to-end|ende-zu-ende|extremo a extremo|de bout en bout|ponta a ponta|ponta-a-ponta|crittografat|"
    r"versleuteld|сквозным шифрованием|koncově|end-to-end šifr|端到端加密|端對端加密|エンドツーエンド|"
    r"بين الطرفين|تشفير تام",
    re.IGNORECASE,
)
WHATSAPP = re.compile(r"whatsapp|واتساب", re.IGNORECASE)
OTHER_SYSTEM = tuple(p.casefold() for p in (
    "Waiting for this message", "Warte auf diese Nachricht", "Esperando este mensaje", "En attente de ce message",
    "Aguardando mensagem", "In attesa del messaggio", "Wachten op dit bericht", "Ожидание сообщения",
    "Čekání na tuto zprávu", "正在等待此消息", "このメッセージを待っています", "في انتظار هذه الرسالة",
    "Your security code with", "Dein Sicherheitscode", "Tu código de seguridad", "Votre code de sécurité",
))

# Group events that iOS writes with the group's name as the "speaker" and a U+200E mark.
EVENT = re.compile(
    r"\b(?:added|removed|left|joined|created group|created this group|changed|deleted|pinned|started a call|"
    r"turned on|turned off|updated|reset|invited|was added|was removed|hinzugefügt|entfernt|hat die Gruppe|"
    r"verlassen|erstellt|geändert|añadió|eliminó|salió|creó|cambió|a ajouté|a retiré|est parti|a créé|a changé|"
    r"adicionou|removeu|saiu|criou|alterou|ha aggiunto|ha rimosso|è uscito|ha creato|ha cambiato|heeft|"
    r"toegevoegd|verwijderd|aangemaakt|gewijzigd|добавил|удалил|вышел|создал|изменил|přidal|odebral|opustil|"
    r"vytvořil|změnil)\b|添加了|移除了|退出了|创建了|更改了|已加入|を追加しました|を削除しました|が退出しました|"
    r"を作成しました|を変更しました|أضاف|أزال|غادر|أنشأ|غيّر",
    re.IGNORECASE,
)
