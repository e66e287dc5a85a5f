//! Sofía's phrase banks: several phrasings per move, in Chilean Spanish with tuteo. Placeholders:
//! `{who}` ("Sofía de Inmobiliaria Andes"), `{name}` (first name), `{name_c}` (", Juan" or nothing),
//! `{interest}`, `{amount}`, `{when}`, `{day}`, `{list}`, `{label}`, `{it}` ("lo" / "los").
//!
//! Rules every phrase keeps (tested): at most one question mark and one emoji, no credit promise,
//! no pie / cuota / credit figure (see `policy`).

pub const GREET: &[&str] = &[
    "¡Hola, soy {who}! 😊",
    "¡Hola, te saluda {who}!",
    "Hola, qué gusto saludarte: soy {who}.",
    "¡Buenas, te escribe {who}!",
];

pub const GREET_NAMED: &[&str] = &[
    "¡Hola, {name}, soy {who}! 😊",
    "Hola {name}, te saluda {who}.",
    "¡Qué tal, {name}, te escribe {who}!",
    "Hola {name}, un gusto: soy {who}.",
];

pub const ASK_NAME: &[&str] = &[
    "¿Me dices tu nombre?",
    "Para atenderte mejor, ¿cuál es tu nombre?",
    "¿Cómo te llamas?",
    "Cuéntame, ¿con quién tengo el gusto? Me sirve tu nombre para atenderte mejor.",
];

pub const NICE_TO_MEET: &[&str] =
    &["¡Un gusto, {name}!", "¡Encantada, {name}!", "Gracias, {name}, un gusto.", "¡Qué bueno saludarte, {name}!"];

pub const ASK_INTEREST: &[&str] = &[
    "¿Qué estás buscando? Cuéntame si es depto o casa y en qué comuna.",
    "Cuéntame, ¿qué tipo de propiedad buscas y en qué comuna te gustaría?",
    "¿Qué tienes en mente? Por ejemplo, un depto o una casa, y en qué sector.",
    "¿En qué te puedo ayudar? Dime qué tipo de propiedad buscas y en qué comuna.",
];

pub const INTEREST_ACK: &[&str] = &[
    "Buenísimo, anoto que buscas {interest}.",
    "Perfecto, {interest}: te ayudo con eso.",
    "Entendido, buscas {interest}.",
    "Qué bien, tomo nota: {interest}.",
];

pub const THANKS: &[&str] = &["¡Gracias{name_c}!", "Perfecto, anotado.", "Muchas gracias{name_c}.", "Listo, lo tengo."];

pub const CONTACT_ASK: &[&str] = &[
    "Para avanzar, ¿me compartes {list}?",
    "¿Me podrías dar {list}?",
    "Para seguir, ¿me dejas {list}?",
    "¿Me ayudas con {list}?",
];

pub const FINANCIAL_REASON: &[&str] = &[
    "Es información confidencial y me sirve para que el ejecutivo llegue a la reunión con alternativas acordes a tu perfil.",
    "Te lo pregunto para orientarte con opciones que se ajusten a ti; todo queda confidencial.",
    "Con eso el ejecutivo puede preparar la reunión según tu perfil, y la información es confidencial.",
];

pub const ASK_INCOME: &[&str] = &[
    "¿Cuál es tu renta líquida mensual aproximada?",
    "¿Cuánto es tu renta líquida al mes, más o menos?",
    "¿De cuánto es tu sueldo líquido mensual aproximado?",
];

pub const ASK_DICOM: &[&str] = &[
    "¿Estás en DICOM o tienes alguna deuda morosa?",
    "¿Tienes deudas morosas o apareces en DICOM?",
    "¿Tienes alguna deuda impaga o estás en DICOM?",
];

pub const ASK_DICOM_AFTER_INCOME: &[&str] = &[
    "¿Y estás en DICOM o tienes alguna deuda morosa?",
    "¿Y tienes deudas morosas o apareces en DICOM?",
    "¿Y tienes alguna deuda impaga o estás en DICOM?",
];

pub const BUDGET_REDIRECT: &[&str] = &[
    "Gracias por contarme tu presupuesto; más que el valor de la propiedad, lo que me ayuda a orientarte es tu renta.",
    "Anoto el presupuesto; para orientarte, lo que más me sirve es conocer tu renta líquida.",
    "Perfecto; más que el precio de la propiedad, para avanzar me sirve saber tu renta.",
];

pub const REPEAT: &[&str] = &[
    "Perdona, se me pasó 🙏 ¿Me repites {label}?",
    "Tienes razón, disculpa. ¿Me confirmas {label} una vez más?",
    "Mil disculpas, no quedó registrado. ¿Me repites {label}, por favor?",
];

pub const ASK_DEBT_AMOUNT: &[&str] = &[
    "Gracias por contarme, es importante saberlo. ¿De qué monto es la deuda, aproximadamente?",
    "Te agradezco la sinceridad. ¿Me cuentas de cuánto es la deuda, más o menos? Así te oriento mejor.",
    "Entiendo, gracias por decírmelo. ¿Sabes el monto aproximado de esa deuda? Con eso veo cómo orientarte.",
];

pub const DICOM_CHECK: &[&str] = &[
    "No te preocupes, es muy común no tenerlo claro. Puedes revisarlo en Equifax o en el boletín comercial (dicom.cl); cuando lo revises, cuéntame y seguimos.",
    "Para salir de la duda, te recomiendo consultar tu informe en Equifax o en el boletín comercial (dicom.cl). Cuando lo tengas, me cuentas y avanzamos.",
    "Tranquilidad, eso se verifica rápido: revisa tu situación en Equifax o en el boletín comercial (dicom.cl) y me cuentas qué aparece.",
];

pub const DICOM_VERIFY: &[&str] = &[
    "Gracias por el dato. A veces el registro tarda en actualizarse, así que te recomiendo verificarlo en Equifax o en el boletín comercial (dicom.cl) y me cuentas qué aparece.",
    "Gracias por contarme. Para confirmar que ya no apareces con deudas, revisa tu informe en Equifax o en el boletín comercial (dicom.cl); cuando lo tengas, seguimos.",
    "Te sugiero verificar tu situación actual en Equifax o en el boletín comercial (dicom.cl), para asegurarnos de que esa deuda ya no figure. Cuando lo revises, me cuentas.",
];

pub const DICOM_RECHECK: &[&str] = &[
    "¿Pudiste revisar tu situación en DICOM?",
    "¿Alcanzaste a consultar tu informe en Equifax (dicom.cl)?",
    "Cuando puedas, cuéntame: ¿apareces con alguna deuda en DICOM?",
];

pub const DICOM_GUIDANCE: &[&str] = &[
    "Gracias por contarme. Una deuda de {amount} es manejable: te recomiendo regularizarla antes de avanzar con la compra, porque estar en DICOM complica la evaluación del banco. ¿Quieres que te oriente sobre cómo hacerlo?",
    "Te agradezco la confianza. Esa deuda de {amount} es manejable: lo ideal es regularizarla primero, así tu evaluación parte limpia. ¿Te oriento con los pasos?",
    "Entiendo. Una deuda de {amount} es manejable, y lo mejor es regularizarla antes de avanzar. ¿Quieres que te explique cómo hacerlo?",
];

pub const DEBT_FOLLOW_UP: &[&str] = &[
    "Te cuento los pasos para regularizarla: revisa el detalle en Equifax (dicom.cl), contacta al acreedor para pactar el pago y guarda el comprobante. Cuando regularices, escríbenos y retomamos 🙌",
    "Para regularizar, lo primero es confirmar el detalle de la deuda en Equifax (boletín comercial), luego pactar el pago con la empresa y pedir el certificado de pago. Cuando regularices, escríbenos y retomamos.",
    "Mi consejo para regularizarla: contacta al acreedor, paga o repacta la deuda y verifica en dicom.cl que se actualice. Cuando regularices, escríbenos y retomamos con gusto.",
];

pub const DEBT_TOO_HIGH: &[&str] = &[
    "Gracias por contarme con honestidad{name_c}. Con una deuda de {amount} en DICOM, lo mejor es regularizarla primero antes de avanzar con una compra. Cuando regularices, escríbenos y retomamos.",
    "Te agradezco la sinceridad{name_c}. Hoy lo más recomendable es regularizar esa deuda de {amount}; con el DICOM al día el proceso es mucho más simple. Cuando regularices, escríbenos y retomamos.",
    "Entiendo tu situación{name_c}. Te recomiendo regularizar primero esa deuda de {amount} y, cuando regularices, escríbenos y retomamos la búsqueda con gusto.",
];

pub const NOT_QUALIFIED: &[&str] = &[
    "Gracias por la confianza{name_c}. Con la renta que me indicas, hoy no tengo una alternativa que ofrecerte con seriedad. Si más adelante tu renta cambia o puedes complementarla con alguien, escríbenos y lo revisamos.",
    "Te agradezco la información{name_c}. Por ahora no tenemos opciones que se ajusten a esa renta, pero si tu situación cambia o puedes complementar renta con tu pareja o un familiar, escríbenos y retomamos.",
    "Gracias por contarme{name_c}. En este momento no tengo una alternativa que calce con esa renta; si más adelante cambia tu situación, escríbenos y con gusto lo vemos.",
];

pub const NOT_QUALIFIED_NO_INCOME: &[&str] = &[
    "Gracias por contarme con sinceridad{name_c}. Sin ingresos estables, hoy no es el momento de avanzar con una compra. Cuando tu situación cambie, escríbenos y retomamos.",
    "Te agradezco la confianza{name_c}. Para comprar se necesita acreditar ingresos, así que por ahora no puedo ofrecerte una alternativa seria. Cuando tengas ingresos estables, escríbenos y lo vemos.",
    "Entiendo{name_c}, gracias por la honestidad. Sin ingresos que acreditar, hoy no tengo una opción que ofrecerte; cuando eso cambie, escríbenos y retomamos con gusto.",
];

pub const NO_INCOME_DEBT_NOTE: &[&str] = &[
    "Y te recomiendo regularizar primero tus deudas en DICOM.",
    "Mientras, lo mejor es ir regularizando las deudas que tengas en DICOM.",
    "También te sugiero regularizar primero tu situación en DICOM.",
];

pub const NURTURE: &[&str] = &[
    "Sin problema{name_c}. Cuando tengas esos datos a mano, escríbeme y seguimos; mientras, cualquier duda me la puedes preguntar.",
    "Quedo atenta{name_c}. Cuando quieras retomar, me escribes y avanzamos con tu búsqueda.",
    "No hay apuro{name_c}. Si te surge cualquier duda sobre los proyectos, aquí estoy.",
];

pub const COMPANION: &[&str] = &[
    "¡Claro que sí! Es muy bueno que participen quienes van a decidir la compra.",
    "¡Por supuesto! Pueden conectarse o venir juntos, así resuelven las dudas entre todos.",
    "¡Claro! Es ideal que te acompañe quien va a decidir contigo.",
];

pub const CONFUSED: &[&str] =
    &["Perdona si no fui clara 🙏", "Disculpa, te lo explico mejor.", "Perdón por la confusión, vamos paso a paso."];

pub const JUST_LOOKING: &[&str] = &[
    "Sin apuro, mirar opciones también es parte del proceso.",
    "Tranquilidad, está perfecto ir viendo con calma.",
    "Me parece muy bien ir informándote sin apuro.",
];

pub const VISIT_FIRST: &[&str] = &[
    "¡Me encanta que quieras ir a verlo! Antes de agendar necesito un par de datos.",
    "Con gusto coordinamos la visita; primero me faltan un par de datos.",
    "¡Buenísimo! Para agendar la visita, primero necesito unos datos.",
];

pub const OFFER_INTRO: &[&str] = &[
    "El siguiente paso es una reunión con un ejecutivo para revisar tus opciones y resolver tus dudas. Tengo estos horarios disponibles:",
    "¡Buenísimo! Te propongo agendar una reunión con un ejecutivo, que te mostrará las alternativas. Estos son los próximos horarios libres:",
    "Ya tengo lo necesario para agendar una reunión con un ejecutivo. Estos horarios están disponibles:",
    "Coordinemos una reunión con un ejecutivo para revisar tus opciones en detalle. Tengo disponibles:",
];

pub const OFFER_DAY_INTRO: &[&str] = &[
    "Para el {day} tengo estos horarios:",
    "El {day} tengo disponible:",
    "Revisé el {day} y tengo estos horarios libres:",
];

pub const OFFER_AGAIN_INTRO: &[&str] = &[
    "Revisé la agenda y encontré estos horarios:",
    "Perfecto, busqué de nuevo y tengo estos horarios:",
    "Te propongo estas otras alternativas:",
];

pub const OFFER_RESCHEDULE_INTRO: &[&str] = &[
    "Claro, busquemos otro horario. Tengo disponibles:",
    "Sin problema, cambiemos la reunión. Estos horarios están libres:",
    "Por supuesto, la movemos. Te propongo:",
];

pub const BOOK_FAILED_INTRO: &[&str] = &[
    "Uy, ese horario ya no está disponible 😕 Te propongo estas alternativas:",
    "Lo siento, ese horario se acaba de ocupar. Tengo estos otros:",
    "Ese horario no me aparece libre, disculpa. Tengo estas alternativas:",
];

pub const OFFER_OUTRO: &[&str] =
    &["¿Cuál te acomoda más?", "¿Te sirve alguno? Puedes responder con el número.", "¿Con cuál nos quedamos?"];

pub const REMIND_OFFER: &[&str] = &[
    "Te dejo de nuevo los horarios que tengo:",
    "Te recuerdo los horarios disponibles:",
    "Sigo teniendo estos horarios para la reunión:",
];

pub const NO_SLOTS: &[&str] = &[
    "No encontré horarios libres para esa fecha. ¿Qué otro día te acomoda?",
    "Para ese día no me quedan horarios, disculpa. ¿Te sirve otro día de la semana?",
    "Esa fecha está completa. ¿Qué otro día y horario te queda bien?",
];

pub const AGENDA_UNAVAILABLE: &[&str] = &[
    "Déjame revisar la agenda y te escribo con horarios en un momento.",
    "Estoy teniendo problemas para ver la agenda; te escribo apenas tenga los horarios.",
    "No pude revisar la agenda ahora, disculpa. Te escribo en breve con horarios disponibles.",
];

pub const BOOK_UNCONFIRMED: &[&str] = &[
    "No pude confirmar ese horario, disculpa. ¿Qué otro día y hora te acomoda?",
    "Tuve un problema para reservar esa hora. ¿Me indicas otro día u horario?",
    "Ese horario no se pudo reservar. ¿Te sirve otro día?",
];

pub const ASK_PREFERENCE: &[&str] = &[
    "Sin problema. ¿Qué días y horarios te acomodan más? Así busco algo que te sirva.",
    "Entiendo, no te preocupes. Cuéntame qué día y a qué hora te queda mejor y reviso la agenda.",
    "No hay problema. ¿Qué día de la semana y en qué horario te resulta más cómodo?",
];

pub const CONTACT_FOR_BOOKING: &[&str] = &[
    "¡Perfecto, el {when}! Para dejar la reunión reservada necesito {list}. ¿Me {it} compartes?",
    "Buenísimo, el {when}. Para reservarla solo me falta {list}. ¿Me {it} das?",
    "¡Excelente elección! Para confirmar el {when} necesito {list}. ¿Me {it} escribes?",
];

pub const BOOKED: &[&str] = &[
    "¡Listo{name_c}! Tu reunión quedó agendada para el {when}.",
    "¡Agendado{name_c}! Nos vemos el {when}.",
    "¡Perfecto{name_c}! Tu reunión quedó confirmada para el {when}.",
];

pub const BOOKED_MEET: &[&str] = &[
    "Te conectas por videollamada en este enlace: {link}",
    "El enlace de la videollamada es {link}",
    "Puedes entrar a la videollamada aquí: {link}",
];

pub const BOOKED_PLACE: &[&str] = &["Será en {place}.", "Nos vemos en {place}.", "El lugar es {place}."];

pub const BOOKED_AGENT: &[&str] =
    &["Te atenderá {agent}.", "{agent} será quien te atienda.", "Te va a recibir {agent}."];

pub const BOOKED_EMAIL: &[&str] = &[
    "Te llegará la invitación a {email}.",
    "La invitación te llegará a {email}.",
    "Te enviaremos la invitación a {email}.",
];

pub const BOOKED_DOCS_IN_PERSON: &[&str] = &[
    "Recuerda: trae tu carnet y tus 3 últimas liquidaciones de sueldo.",
    "No olvides: trae tu carnet y tus 3 últimas liquidaciones de sueldo.",
    "Para aprovechar la reunión, trae tu carnet y tus 3 últimas liquidaciones de sueldo.",
];

pub const BOOKED_DOCS_ONLINE: &[&str] = &[
    "Recuerda tener a mano tu carnet y tus 3 últimas liquidaciones de sueldo.",
    "Para aprovechar la reunión, ten a mano tu carnet y tus 3 últimas liquidaciones de sueldo.",
    "No olvides tener a mano tu carnet y tus 3 últimas liquidaciones de sueldo.",
];

pub const AFTER_BOOKING: &[&str] = &[
    "Tu reunión sigue agendada para el {when}. Si necesitas cambiarla, me avisas y buscamos otro horario.",
    "Te recuerdo que nos vemos el {when}. Si te complica, dime y la cambiamos.",
    "Todo sigue en pie para el {when}. Cualquier cambio, me escribes por aquí.",
];

pub const AFTER_BOOKING_UNDATED: &[&str] = &[
    "Tu reunión ya está agendada. Si necesitas cambiarla, me avisas y buscamos otro horario.",
    "Ya tienes tu reunión agendada con un ejecutivo; cualquier cambio, me escribes por aquí.",
    "Tu reunión sigue en pie. Si te complica, dime y buscamos otro horario.",
];

pub const BOOKING_DETAILS: &[&str] =
    &["Tu reunión es el {when}.", "Te confirmo: nos vemos el {when}.", "Quedamos para el {when}."];

pub const AFTER_BOOKING_THANKS: &[&str] = &[
    "¡De nada{name_c}! Nos vemos el {when}.",
    "¡Con gusto{name_c}! Te esperamos el {when}.",
    "¡A ti{name_c}! Quedamos para el {when}.",
];

pub const AFTER_BOOKING_ANSWERED: &[&str] =
    &["Tu reunión sigue en pie para el {when}.", "Y te recuerdo tu reunión del {when}.", "Nos vemos el {when}."];

pub const LOST_DEBT: &[&str] = &[
    "Cuando regularices tu situación en DICOM, escríbenos y retomamos con gusto.",
    "Quedo atenta{name_c}: apenas regularices la deuda, escríbenos y retomamos.",
    "Cuando regularices, escríbenos y retomamos la búsqueda desde donde quedamos.",
];

pub const LOST_OTHER: &[&str] = &[
    "Si tu situación cambia, escríbenos y lo revisamos con gusto.",
    "Quedo atenta{name_c}. Si más adelante cambia algo, me escribes y retomamos.",
    "Cuando quieras retomar, escríbenos y lo vemos.",
];

pub const OPT_OUT: &[&str] = &[
    "Entendido{name_c}. No te contactaremos más; si en algún momento quieres retomar, aquí estaremos.",
    "Perfecto, respeto tu decisión: no te enviaremos más mensajes. Si más adelante te interesa, escríbenos cuando quieras.",
    "Listo{name_c}, no volveremos a contactarte. Gracias por tu tiempo, y si cambias de opinión, escríbenos.",
];

pub const ESCALATE_REQUEST: &[&str] = &[
    "¡Claro{name_c}! Te comunico con un ejecutivo{broker_de}, que te responderá por este mismo chat a la brevedad.",
    "Por supuesto{name_c}, te comunico con un ejecutivo; te escribirá en breve por aquí.",
    "Con gusto{name_c}. Te comunico con un ejecutivo, que seguirá contigo por este mismo medio.",
];

pub const ESCALATE_FRUSTRATION: &[&str] = &[
    "Lamento mucho la molestia{name_c}. Te comunico con un ejecutivo para que te ayude personalmente.",
    "Disculpa los inconvenientes{name_c}. Te comunico con un ejecutivo, que te escribirá en breve por aquí.",
    "Siento mucho que haya sido así{name_c}. Te comunico ahora con un ejecutivo para resolverlo.",
];

pub const ESCALATE_LOOP: &[&str] = &[
    "Perdona, creo que no te estoy entendiendo bien. Te comunico con un ejecutivo para que te ayude directamente.",
    "Disculpa, parece que no estoy logrando ayudarte. Te comunico con un ejecutivo, que te escribirá por aquí.",
    "Lo siento{name_c}, no te estoy entendiendo. Te comunico con un ejecutivo para que lo vean juntos.",
];

pub const WHO_AM_I: &[&str] = &[
    "Soy {agent}, la asistente virtual{broker_de}; si en algún momento prefieres, te comunico con un ejecutivo.",
    "Te cuento: soy {agent}, asistente virtual{broker_de}, y si quieres hablar con una persona te comunico con un ejecutivo.",
    "Soy {agent}, asistente virtual{broker_de}. Cuando quieras, te puedo derivar con un ejecutivo.",
];

pub const HOW_ARE_YOU: &[&str] =
    &["¡Muy bien, gracias por preguntar!", "¡Todo bien por acá, gracias!", "¡Muy bien, gracias!"];

pub const INCOME_TOO: &[&str] = &["Y mientras, {ask}", "Y cuéntame, {ask}", "Por otro lado, {ask}"];

pub const KB_ANSWER: &[&str] = &["{answer}", "Te cuento. {answer}", "Buena pregunta. {answer}"];

pub const NO_ANSWER: &[&str] = &[
    "Esa consulta la reviso con un ejecutivo para darte la información correcta.",
    "No tengo ese dato a mano; lo confirmo con un ejecutivo para no darte información incorrecta.",
    "Buena pregunta: la dejo anotada para que un ejecutivo te responda con el detalle.",
];

pub const DEFLECT_FINANCING: &[&str] = &[
    "El pie, las cuotas y las condiciones del crédito dependen de la evaluación de cada banco, así que eso lo revisa contigo un ejecutivo en una videollamada.",
    "Los montos de pie y dividendo dependen de tu evaluación con el banco; prefiero que un ejecutivo te los explique en una videollamada, con tu caso a la vista.",
    "Sobre el financiamiento no te quiero dar cifras al aire: cada caso lo evalúa el banco, y un ejecutivo lo revisa contigo en una videollamada.",
];

pub const EXPLAIN_DICOM: &[&str] = &[
    "DICOM es el registro de deudas impagas que administra Equifax (también llamado boletín comercial). Tener deudas morosas suele complicar la evaluación de un crédito hipotecario, por eso lo reviso contigo.",
    "El DICOM es el boletín comercial de Equifax, donde aparecen las deudas impagas. Estar ahí dificulta la evaluación de los bancos, por eso es un dato importante.",
    "DICOM es la base de Equifax con las deudas morosas de las personas. Los bancos la revisan al evaluar un crédito, por eso te pregunto por ella.",
];

pub const SAFE_FALLBACK: &str =
    "Gracias por escribirnos. Un ejecutivo revisará tu consulta y te responderá a la brevedad.";

/// Every bank, for the tests.
#[cfg(test)]
pub const ALL: &[(&str, &[&str])] = &[
    ("GREET", GREET),
    ("GREET_NAMED", GREET_NAMED),
    ("ASK_NAME", ASK_NAME),
    ("NICE_TO_MEET", NICE_TO_MEET),
    ("ASK_INTEREST", ASK_INTEREST),
    ("INTEREST_ACK", INTEREST_ACK),
    ("THANKS", THANKS),
    ("CONTACT_ASK", CONTACT_ASK),
    ("FINANCIAL_REASON", FINANCIAL_REASON),
    ("ASK_INCOME", ASK_INCOME),
    ("ASK_DICOM", ASK_DICOM),
    ("ASK_DICOM_AFTER_INCOME", ASK_DICOM_AFTER_INCOME),
    ("BUDGET_REDIRECT", BUDGET_REDIRECT),
    ("REPEAT", REPEAT),
    ("ASK_DEBT_AMOUNT", ASK_DEBT_AMOUNT),
    ("DICOM_CHECK", DICOM_CHECK),
    ("DICOM_RECHECK", DICOM_RECHECK),
    ("DICOM_GUIDANCE", DICOM_GUIDANCE),
    ("DEBT_FOLLOW_UP", DEBT_FOLLOW_UP),
    ("DEBT_TOO_HIGH", DEBT_TOO_HIGH),
    ("NOT_QUALIFIED", NOT_QUALIFIED),
    ("NOT_QUALIFIED_NO_INCOME", NOT_QUALIFIED_NO_INCOME),
    ("NO_INCOME_DEBT_NOTE", NO_INCOME_DEBT_NOTE),
    ("NURTURE", NURTURE),
    ("JUST_LOOKING", JUST_LOOKING),
    ("VISIT_FIRST", VISIT_FIRST),
    ("OFFER_INTRO", OFFER_INTRO),
    ("OFFER_DAY_INTRO", OFFER_DAY_INTRO),
    ("OFFER_AGAIN_INTRO", OFFER_AGAIN_INTRO),
    ("OFFER_RESCHEDULE_INTRO", OFFER_RESCHEDULE_INTRO),
    ("BOOK_FAILED_INTRO", BOOK_FAILED_INTRO),
    ("OFFER_OUTRO", OFFER_OUTRO),
    ("REMIND_OFFER", REMIND_OFFER),
    ("NO_SLOTS", NO_SLOTS),
    ("AGENDA_UNAVAILABLE", AGENDA_UNAVAILABLE),
    ("BOOK_UNCONFIRMED", BOOK_UNCONFIRMED),
    ("ASK_PREFERENCE", ASK_PREFERENCE),
    ("CONTACT_FOR_BOOKING", CONTACT_FOR_BOOKING),
    ("BOOKED", BOOKED),
    ("BOOKED_MEET", BOOKED_MEET),
    ("BOOKED_PLACE", BOOKED_PLACE),
    ("BOOKED_AGENT", BOOKED_AGENT),
    ("BOOKED_EMAIL", BOOKED_EMAIL),
    ("BOOKED_DOCS_IN_PERSON", BOOKED_DOCS_IN_PERSON),
    ("BOOKED_DOCS_ONLINE", BOOKED_DOCS_ONLINE),
    ("AFTER_BOOKING", AFTER_BOOKING),
    ("AFTER_BOOKING_THANKS", AFTER_BOOKING_THANKS),
    ("AFTER_BOOKING_ANSWERED", AFTER_BOOKING_ANSWERED),
    ("LOST_DEBT", LOST_DEBT),
    ("LOST_OTHER", LOST_OTHER),
    ("OPT_OUT", OPT_OUT),
    ("ESCALATE_REQUEST", ESCALATE_REQUEST),
    ("ESCALATE_FRUSTRATION", ESCALATE_FRUSTRATION),
    ("ESCALATE_LOOP", ESCALATE_LOOP),
    ("WHO_AM_I", WHO_AM_I),
    ("HOW_ARE_YOU", HOW_ARE_YOU),
    ("INCOME_TOO", INCOME_TOO),
    ("KB_ANSWER", KB_ANSWER),
    ("NO_ANSWER", NO_ANSWER),
    ("DEFLECT_FINANCING", DEFLECT_FINANCING),
    ("EXPLAIN_DICOM", EXPLAIN_DICOM),
];
